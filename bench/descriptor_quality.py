"""Retrieval quality of the offline descriptor (`unde-descriptor-v1`) on the synthetic data.

- catalog→catalog: every catalog image queries all the *other* catalog images; a hit is the
  same SKU among the top-5 distinct SKUs of the ranking.
- street→catalog: every ground-truth box of an in-catalog garment in a street photo is
  cropped and queries all catalog images; a hit is its SKU among the top-5 distinct SKUs.

Chance is 5 / number of SKUs. Images are rendered by `unde.synthetic` (the same generator
`make demo` seeds) and cached as JPEGs under bench/.cache/descriptor_data/.

Run: ``python -m bench.descriptor_quality [--quick]``.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unde.models.descriptor import DescriptorEmbedder

CACHE = Path(__file__).resolve().parent / ".cache" / "descriptor_data"
SEED = 7
TOP_K = 5


@dataclass(frozen=True, slots=True)
class Dataset:
    """Catalog images with their SKU labels, and street crops with theirs."""

    catalog: list[Image.Image]
    catalog_sku: list[str]
    street: list[Image.Image]
    street_sku: list[str]


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def _render(n_street: int) -> None:
    from unde.synthetic.availability import plan_availability
    from unde.synthetic.catalog import generate_catalog
    from unde.synthetic.render import render_product_images
    from unde.synthetic.street import render_street_photo

    catalog = generate_catalog(SEED, "small")
    (CACHE / "catalog").mkdir(parents=True, exist_ok=True)
    (CACHE / "street").mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"catalog": [], "street": []}
    for sku in catalog.skus:
        key = f"{sku.brand}/{sku.external_id}"
        for rank, image in enumerate(render_product_images(sku)):
            name = f"catalog/{sku.brand}-{sku.external_id}-{rank}.jpg"
            (CACHE / name).write_bytes(_jpeg(image))
            index["catalog"].append({"file": name, "sku": key})
    in_stock = plan_availability(catalog, SEED).in_stock_malls()
    for i in range(n_street):
        photo = render_street_photo(catalog, in_stock, catalog.malls[i % len(catalog.malls)].name, i, SEED)
        name = f"street/{photo.photo_id}.jpg"
        (CACHE / name).write_bytes(_jpeg(photo.image))
        index["street"].append({"file": name, "items": photo.items})
    (CACHE / "index.json").write_text(json.dumps(index))


def load_dataset(n_street: int) -> Dataset:
    """Render (once) and load the catalog and the first `n_street` street photos' crops."""
    index_path = CACHE / "index.json"
    if not index_path.exists() or len(json.loads(index_path.read_text())["street"]) < n_street:
        _render(n_street)
    index = json.loads(index_path.read_text())
    catalog = [Image.open(CACHE / row["file"]).convert("RGB") for row in index["catalog"]]
    street, street_sku = [], []
    for row in index["street"][:n_street]:
        photo = Image.open(CACHE / row["file"]).convert("RGB")
        for item in row["items"]:
            if item["in_catalog"]:
                street.append(photo.crop(tuple(item["bbox"])))
                street_sku.append(f"{item['brand']}/{item['external_id']}")
    return Dataset(catalog, [row["sku"] for row in index["catalog"]], street, street_sku)


def recall_at_k(queries: np.ndarray, query_sku: list[str], gallery: np.ndarray,
                gallery_sku: list[str], *, exclude_self: bool, k: int = TOP_K) -> float:
    """Share of queries whose SKU is among the top-k distinct SKUs of the ranked gallery."""
    scores = queries @ gallery.T
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    hits = 0
    for row, truth in zip(scores, query_sku, strict=True):
        seen: list[str] = []
        for j in np.argsort(-row):
            if gallery_sku[j] not in seen:
                seen.append(gallery_sku[j])
                if len(seen) == k:
                    break
        hits += truth in seen
    return hits / max(len(query_sku), 1)


def evaluate(data: Dataset, weights: dict[str, float] | None = None) -> dict[str, float]:
    """Recall@5 both ways, chance, and descriptor time per image."""
    embedder = DescriptorEmbedder(weights)
    started = time.perf_counter()
    catalog = embedder.embed(data.catalog)
    ms = (time.perf_counter() - started) * 1000 / len(data.catalog)
    street = embedder.embed(data.street)
    n_skus = len(set(data.catalog_sku))
    return {
        "catalog": recall_at_k(catalog, data.catalog_sku, catalog, data.catalog_sku, exclude_self=True),
        "street": recall_at_k(street, data.street_sku, catalog, data.catalog_sku, exclude_self=False),
        "chance": TOP_K / n_skus,
        "ms": ms,
        "n_catalog": len(data.catalog),
        "n_street": len(data.street),
        "n_skus": n_skus,
    }


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """Measure and print the descriptor's recall@5; figures in the bench results format."""
    data = load_dataset(40 if quick else 150)
    result = evaluate(data)
    chance = result["chance"]
    figures: dict[str, dict[str, Any]] = {
        "descriptor_recall5_catalog": {"value": round(result["catalog"], 4), "unit": "recall@5",
                                       "baseline": "chance (5 / SKUs)", "baseline_value": round(chance, 4)},
        "descriptor_recall5_street": {"value": round(result["street"], 4), "unit": "recall@5",
                                      "baseline": "chance (5 / SKUs)", "baseline_value": round(chance, 4)},
        "descriptor_recall5_chance": {"value": round(chance, 4), "unit": "recall@5"},
        "descriptor_ms_per_image": {"value": round(result["ms"], 2), "unit": "ms"},
    }
    print(f"offline descriptor on {result['n_catalog']} catalog images of {result['n_skus']} SKUs, "
          f"{result['n_street']} street crops")
    print(f"  {'figure':<28}{'value':>10}{'chance':>10}{'× chance':>10}")
    for name in ("catalog", "street"):
        print(f"  recall@5 {name:<19}{result[name]:>10.3f}{chance:>10.3f}{result[name] / chance:>10.1f}")
    print(f"  {'ms per image':<28}{result['ms']:>10.2f}")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
