"""Does the offline reranker improve on the raw search order? Top-1 before/after, two seeds.

Data: two synthetic worlds rendered by `unde.synthetic` — the tuning seed (7, cached by
bench/descriptor_quality.py under bench/.cache/descriptor_data/) and a held-out seed (11,
bench/.cache/rerank_data/seed-11/: another catalog, other street photos) that no rule or
constant of the reranker was chosen on. Every ground-truth box of an in-catalog garment is
cropped and embedded with the offline descriptor; every catalog photo is embedded and stored
in a real production DB (embedded PostgreSQL + pgvector, bench/.cache/rerank_pg/) — the
reranker reads them back with its one SQL statement.

- before: the raw search order as the gateway's /search returns it — the whole catalog (it
  does not filter by category) ranked by the best cosine similarity of any of a SKU's photos
  (pgvector + best_per_sku), top 20.
- after: `OfflineReranker.rerank` of those 20 with the crop's tags as the offline pipeline
  has them: the category from detection and colour / pattern / type / material from the
  gateway's offline tagger (`unde.vision.tagger.tag_garment`). No ground-truth attribute is
  given to it. Boxes and categories are the ground truth's (detection quality is
  bench/vision_quality.py's subject).
- context figures: the search order restricted to the crop's category (a stronger baseline
  than /search gives), the old rule that trusted every tagger field, each visual aggregate,
  and ground-truth tags (an upper bound for a perfect tagger).

Run: ``python -m bench.rerank_quality [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from PIL import Image

from bench.descriptor_quality import CACHE as SEED7_DATA
from bench.descriptor_quality import SEED as TUNING_SEED
from unde.db.embedded import embedded_base_url, ensure_database, with_database
from unde.db.migrate import apply_migrations
from unde.db.pool import open_pool
from unde.models.descriptor import MODEL_VERSION, DescriptorEmbedder
from unde.rerank.candidates import RerankCandidate
from unde.rerank.combine import Weights
from unde.rerank.offline import OfflineReranker, VisualAggregate
from unde.settings import REPO_ROOT
from unde.vision.tagger import tag_garment

HELD_OUT_SEED = 11
PG_DIR = REPO_ROOT / "bench" / ".cache" / "rerank_pg"
DATA_ROOT = REPO_ROOT / "bench" / ".cache" / "rerank_data"
DB_NAME = "rerank_bench"
TOP_N = 20


@dataclass(frozen=True, slots=True)
class Query:
    """One street crop: its true SKU, category, offline tags and ground-truth tags."""

    sku: str
    category: str
    tags: dict[str, Any]
    truth: dict[str, Any]
    crop: Image.Image


@dataclass(frozen=True, slots=True)
class World:
    """One seed's catalog (photos, labels, metadata) and street crops."""

    seed: int
    catalog: list[Image.Image]
    catalog_sku: list[str]
    metadata: dict[str, dict[str, Any]]
    queries: list[Query]


def _data_dir(seed: int) -> Path:
    return SEED7_DATA if seed == TUNING_SEED else DATA_ROOT / f"seed-{seed}"


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def _render(seed: int, n_street: int, root: Path) -> None:
    """Catalog photos and street photos of `seed` as JPEGs + index.json (descriptor_quality's layout)."""
    from unde.synthetic.availability import plan_availability
    from unde.synthetic.catalog import generate_catalog
    from unde.synthetic.render import render_product_images
    from unde.synthetic.street import render_street_photo

    catalog = generate_catalog(seed, "small")
    (root / "catalog").mkdir(parents=True, exist_ok=True)
    (root / "street").mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"catalog": [], "street": []}
    for sku in catalog.skus:
        for rank, image in enumerate(render_product_images(sku)):
            name = f"catalog/{sku.brand}-{sku.external_id}-{rank}.jpg"
            (root / name).write_bytes(_jpeg(image))
            index["catalog"].append({"file": name, "sku": f"{sku.brand}/{sku.external_id}"})
    in_stock = plan_availability(catalog, seed).in_stock_malls()
    for i in range(n_street):
        photo = render_street_photo(catalog, in_stock, catalog.malls[i % len(catalog.malls)].name, i, seed)
        name = f"street/{photo.photo_id}.jpg"
        (root / name).write_bytes(_jpeg(photo.image))
        index["street"].append({"file": name, "items": photo.items})
    (root / "index.json").write_text(json.dumps(index))


def _catalog_metadata(seed: int) -> dict[str, dict[str, Any]]:
    from unde.synthetic.catalog import generate_catalog
    from unde.synthetic.render import image_kinds

    return {f"{s.brand}/{s.external_id}": {
        "category": s.category, "product_type": s.product_type, "colour": s.colour,
        "pattern": s.pattern, "material": s.material, "image_kinds": image_kinds(s)}
        for s in generate_catalog(seed, "small").skus}


def _offline_tags(crop: Image.Image, category: str) -> dict[str, Any]:
    """What the gateway's offline /tag says about the crop (category from detection)."""
    tags = tag_garment(crop, category)
    return {"category": category, "type": tags.type, "color": tags.color, "pattern": tags.pattern,
            "material": tags.material, "probabilities": dict(tags.probabilities)}


def load_world(seed: int, n_street: int) -> World:
    """Render (once) and load `seed`'s catalog and the in-catalog crops of `n_street` photos."""
    root = _data_dir(seed)
    index_path = root / "index.json"
    if not index_path.exists() or len(json.loads(index_path.read_text())["street"]) < n_street:
        _render(seed, n_street, root)
    index = json.loads(index_path.read_text())
    catalog = [Image.open(root / row["file"]).convert("RGB") for row in index["catalog"]]
    queries: list[Query] = []
    for row in index["street"][:n_street]:
        photo = Image.open(root / row["file"]).convert("RGB")
        for item in row["items"]:
            if item["in_catalog"]:
                crop = photo.crop(tuple(item["bbox"]))
                truth = {"category": item["category"], "type": item["product_type"],
                         "color": item["colour"], "pattern": item["pattern"], "material": item["material"]}
                queries.append(Query(f"{item['brand']}/{item['external_id']}", item["category"],
                                     _offline_tags(crop, item["category"]), truth, crop))
    return World(seed, catalog, [row["sku"] for row in index["catalog"]], _catalog_metadata(seed), queries)


def _store(url: str, vectors: np.ndarray, skus: list[str]) -> None:
    rows: list[tuple[Any, ...]] = []
    ranks: dict[str, int] = {}
    for sku, vector in zip(skus, vectors, strict=True):
        rank = ranks.get(sku, 0)
        ranks[sku] = rank + 1
        brand, external_id = sku.split("/", 1)
        rows.append((external_id, brand, f"http://img/{sku}/{rank}", rank, f"{sku}/{rank}", vector,
                     MODEL_VERSION))
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("TRUNCATE sku_image_embeddings")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sku_image_embeddings (sku_id, brand, image_url, image_rank, image_hash,"
                " embedding, model_version) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)


def _search_order(query: np.ndarray, gallery: np.ndarray, gallery_sku: list[str],
                  allowed: set[str] | None = None) -> list[tuple[str, float]]:
    """Top SKUs by their best photo's cosine similarity (optionally only `allowed` SKUs)."""
    best: dict[str, float] = {}
    for sku, score in zip(gallery_sku, gallery @ query, strict=True):
        if (allowed is None or sku in allowed) and score > best.get(sku, -2.0):
            best[sku] = float(score)
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]


#: (figure, visual aggregate, which tags, tag provider the reranker assumes)
VARIANTS: tuple[tuple[str, VisualAggregate, str, str], ...] = (
    ("after", "best", "offline", "local"),
    ("all_tags_trusted", "best", "offline", "trusted"),
    ("visual_top2", "top2", "offline", "local"),
    ("visual_top3", "top3", "offline", "local"),
    ("visual_mean", "mean", "offline", "local"),
    ("oracle", "best", "truth", "trusted"),
)


async def _evaluate(url: str, vectors: np.ndarray, gallery: np.ndarray, world: World) -> dict[str, float]:
    pool = await open_pool(url, name="bench", min_size=1, max_size=2, vector=True)
    rerankers = {name: OfflineReranker(pool, Weights(0.7, 0.3), visual_aggregate=aggregate,
                                       tag_provider=provider)
                 for name, aggregate, _, provider in VARIANTS}
    hits = dict.fromkeys(["before", "category_filtered", "in_top_n", *rerankers], 0)
    by_category: dict[str, set[str]] = {}
    for sku, meta in world.metadata.items():
        by_category.setdefault(meta["category"], set()).add(sku)
    try:
        for vector, query in zip(vectors, world.queries, strict=True):
            order = _search_order(vector, gallery, world.catalog_sku)
            filtered = _search_order(vector, gallery, world.catalog_sku, by_category[query.category])
            hits["before"] += order[0][0] == query.sku
            hits["category_filtered"] += filtered[0][0] == query.sku
            hits["in_top_n"] += any(sku == query.sku for sku, _ in order)
            candidates = [RerankCandidate(sku.split("/", 1)[0], sku.split("/", 1)[1], score, ("u",),
                                          world.metadata[sku]) for sku, score in order]
            for name, _, which, _ in VARIANTS:
                crop_tags = query.tags if which == "offline" else query.truth
                ranked = await rerankers[name].rerank(candidates, crop_tags, embedding=vector.tolist(),
                                                      model_version=MODEL_VERSION)
                hits[name] += ranked[0].sku_id == query.sku
    finally:
        await pool.close()
    return {name: count / max(len(world.queries), 1) for name, count in hits.items()}


def measure(seed: int, n_street: int) -> dict[str, float]:
    """Top-1 accuracy before/after rerank (and context figures) on `seed`'s first `n_street` photos."""
    world = load_world(seed, n_street)
    embedder = DescriptorEmbedder()
    gallery = embedder.embed(world.catalog)
    crops = embedder.embed([q.crop for q in world.queries])
    admin = embedded_base_url(PG_DIR)
    ensure_database(admin, DB_NAME)
    url = with_database(admin, DB_NAME)
    apply_migrations(url, "production", REPO_ROOT / "sql")
    _store(url, gallery, world.catalog_sku)
    result = asyncio.run(_evaluate(url, crops, gallery, world))
    for name in ("color", "pattern"):
        result[f"{name}_accuracy"] = sum(q.tags[name] == q.truth[name] for q in world.queries) / max(
            len(world.queries), 1)
    result["n"] = len(world.queries)
    return result


LABELS: tuple[tuple[str, str], ...] = (
    ("before", "top-1 raw search order (/search)"),
    ("after", "top-1 after offline rerank"),
    ("category_filtered", "top-1 search within true category"),
    ("all_tags_trusted", "  rerank trusting every tag field"),
    *((f"visual_{name}", f"  rerank, visual = {name}") for name in ("top2", "top3", "mean")),
    ("oracle", "  rerank with ground-truth tags"),
    ("in_top_n", f"true SKU in top {TOP_N} (ceiling)"),
    ("color_accuracy", "offline tagger colour correct"),
    ("pattern_accuracy", "offline tagger pattern correct"),
)


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """Measure and print top-1 before/after on the tuning and the held-out seed."""
    n_street = 40 if quick else 150
    tuning, held_out = measure(TUNING_SEED, n_street), measure(HELD_OUT_SEED, n_street)
    figures: dict[str, dict[str, Any]] = {}
    for suffix, r in (("", tuning), ("_heldout", held_out)):
        before = round(r["before"], 4)
        figures[f"rerank_top1_before{suffix}"] = {"value": before, "unit": "top-1 accuracy"}
        figures[f"rerank_top1_after{suffix}"] = {
            "value": round(r["after"], 4), "unit": "top-1 accuracy",
            "baseline": "raw search order", "baseline_value": before}
    figures["rerank_top1_search_in_category"] = {"value": round(tuning["category_filtered"], 4),
                                                 "unit": "top-1 accuracy"}
    figures["rerank_top1_all_tags_trusted"] = {
        "value": round(tuning["all_tags_trusted"], 4), "unit": "top-1 accuracy",
        "baseline": "offline rerank (calibrated fields)", "baseline_value": round(tuning["after"], 4)}
    figures["rerank_top1_oracle_tags"] = {
        "value": round(tuning["oracle"], 4), "unit": "top-1 accuracy",
        "baseline": "raw search order", "baseline_value": round(tuning["before"], 4)}
    figures["rerank_true_sku_in_top20"] = {"value": round(tuning["in_top_n"], 4), "unit": "share"}
    print(f"offline rerank, descriptor {MODEL_VERSION}, top {TOP_N}; seed {TUNING_SEED} (tuning) "
          f"{int(tuning['n'])} crops, seed {HELD_OUT_SEED} (held out) {int(held_out['n'])} crops")
    print(f"  {'figure':<38}{'seed ' + str(TUNING_SEED):>9}{'seed ' + str(HELD_OUT_SEED):>9}")
    for name, label in LABELS:
        print(f"  {label:<38}{tuning[name]:>9.3f}{held_out[name]:>9.3f}")
    for label, r in (("tuning", tuning), ("held out", held_out)):
        if r["before"]:
            print(f"  after / before ({label}) = {r['after'] / r['before']:.2f}×")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
