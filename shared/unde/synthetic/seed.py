"""Seed the staging DB and a data directory with the synthetic mall.

``seed_dataset`` is idempotent: it TRUNCATEs ``raw_stores``, ``raw_products`` and
``raw_availability`` and COPYs the new rows in one transaction, and rewrites the data
directory's synthetic files (layout in :mod:`unde.synthetic.layout`).

Catalog images are written for the small and medium scales. At full scale (~280 K images)
only ``manifest.json`` is written and the image server renders each image on first request,
deterministically from the manifest's seed and scale, and caches it on disk.

Street-photo ground truth — ``data_dir/street/ground_truth.json`` (real labelled photos use
the same format)::

    {
      "version": 1,
      "photos": [
        {
          "photo_id": "street-7-0000",
          "file": "street-7-0000.jpg",          # relative to the street directory
          "mall": "Dubai Hills Mall",           # where the photo was taken
          "width": 800, "height": 1000,
          "items": [
            {
              "bbox": [x0, y0, x1, y1],         # pixels of the final image, x1/y1 exclusive;
                                                # the garment's *visible* part
              "category": "top",                # coarse, vocabulary.CATEGORIES
              "product_type": "shirt",          # fine, vocabulary.TYPES_BY_CATEGORY
              "colour": "navy",                 # vocabulary.COLOURS name (dominant colour)
              "secondary_colour": "white",      # pattern colour, null when solid
              "pattern": "striped",             # vocabulary.PATTERNS
              "material": "cotton",             # vocabulary.MATERIALS
              "brand": "northline",             # null when not in the catalog
              "external_id": "NL-000042",       # null when not in the catalog
              "in_catalog": true,
              "available_in_mall": true         # in stock in a store in `mall` (fresh ≤ 24 h,
                                                # non-empty sizes) as of the seeding `now`
            }
          ]
        }
      ]
    }
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb

from unde.synthetic.availability import AvailabilityPlan, plan_availability
from unde.synthetic.catalog import Catalog, Sku, generate_catalog
from unde.synthetic.layout import (
    MANIFEST_NAME,
    RENDER_VERSION,
    catalog_image_path,
    catalog_image_relpath,
    images_root,
    read_manifest,
    street_dir,
    write_bytes_atomic,
)
from unde.synthetic.render import image_kinds, jpeg_bytes, render_product_images
from unde.synthetic.street import render_street_photo

STREET_PHOTOS_PER_SCALE: Final[dict[str, int]] = {"small": 12, "medium": 60, "full": 200}
LAZY_SCALES: Final[frozenset[str]] = frozenset({"full"})
GROUND_TRUTH_VERSION: Final[int] = 1


@dataclass(slots=True)
class SeedReport:
    """What ``seed_dataset`` wrote, and how long each step took (seconds)."""

    scale: str
    seed: int
    malls: int = 0
    brands: int = 0
    stores: int = 0
    skus: int = 0
    image_urls: int = 0
    images_rendered: int = 0
    lazy_images: bool = False
    availability_rows: int = 0
    availability_pairs: int = 0
    street_photos: int = 0
    street_items: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        lines = [
            f"synthetic mall: scale={self.scale} seed={self.seed}",
            f"  {self.malls} malls, {self.brands} brands, {self.stores} stores, {self.skus} SKUs",
            f"  {self.image_urls} image URLs, {self.images_rendered} rendered"
            + (" (lazy: rendered on request)" if self.lazy_images else ""),
            f"  {self.availability_rows} availability rows over {self.availability_pairs} (product, store) pairs",
            f"  {self.street_photos} street photos with {self.street_items} labelled garments",
            "  timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()),
        ]
        return "\n".join(lines)


def street_mall(catalog: Catalog, index: int) -> str:
    """Mall of street photo ``index``: every other photo in Dubai Hills Mall, the rest rotate."""
    if index % 2 == 0:
        return "Dubai Hills Mall"
    others = [m.name for m in catalog.malls if m.name != "Dubai Hills Mall"]
    return others[(index // 2) % len(others)]


def _write_db(
    conn: psycopg.Connection[Any], catalog: Catalog, plan: AvailabilityPlan, base_url: str, now: datetime
) -> int:
    rows = 0
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("TRUNCATE raw_availability, raw_products, raw_stores RESTART IDENTITY")
        with cur.copy("COPY raw_stores (brand, store_id, name, address, mall_name, floor, city) FROM STDIN") as cp:
            for st in catalog.stores:
                cp.write_row((st.brand, st.store_id, st.name, st.address, st.mall_name, st.floor, st.city))
        cols = (
            "brand, external_id, name, price, currency, category, product_type, colour, material, pattern, "
            "image_urls, image_kinds, updated_at"
        )
        with cur.copy(f"COPY raw_products ({cols}) FROM STDIN") as cp:
            for sku in catalog.skus:
                urls = [
                    f"{base_url}/{catalog_image_relpath(sku.brand, sku.external_id, r)}" for r in range(sku.n_images)
                ]
                cp.write_row(
                    (
                        sku.brand,
                        sku.external_id,
                        sku.name,
                        sku.price,
                        sku.currency,
                        sku.category,
                        sku.product_type,
                        sku.colour,
                        sku.material,
                        sku.pattern,
                        Jsonb(urls),
                        Jsonb(image_kinds(sku)),
                        now,
                    )
                )
        with cur.copy(
            "COPY raw_availability (brand, store_id, product_id, sizes_in_stock, fetched_at) FROM STDIN"
        ) as cp:
            for chunk in plan.snapshot_chunks():
                rows += chunk.count("\n")
                cp.write(chunk)
    return rows


def _render_batch(args: tuple[str, list[Sku], bool]) -> int:
    """Worker: render and write all images of a batch of SKUs; returns how many were written."""
    data_dir, skus, skip_existing = args
    written = 0
    for sku in skus:
        paths = [catalog_image_path(Path(data_dir), sku.brand, sku.external_id, r) for r in range(sku.n_images)]
        if skip_existing and all(p.exists() for p in paths):
            continue
        for path, img in zip(paths, render_product_images(sku), strict=True):
            write_bytes_atomic(path, jpeg_bytes(img))
            written += 1
    return written


def _street_batch(
    args: tuple[Catalog, dict[tuple[str, str], frozenset[str]], list[int], str],
) -> list[dict[str, Any]]:
    """Worker: render street photos; returns their ground-truth records."""
    catalog, in_stock, indices, out_dir = args
    records = []
    for i in indices:
        photo = render_street_photo(catalog, in_stock, street_mall(catalog, i), i, catalog.seed)
        file = f"{photo.photo_id}.jpg"
        write_bytes_atomic(Path(out_dir) / file, jpeg_bytes(photo.image, quality=90))
        records.append(photo.record(file))
    return records


def _run_parallel(fn: Any, jobs: list[Any], workers: int) -> Iterable[Any]:
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        return list(pool.map(fn, jobs))


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


def seed_dataset(
    staging_url: str,
    data_dir: Path,
    scale: str = "small",
    seed: int = 7,
    image_base_url: str = "http://127.0.0.1:8090",
    now: datetime | None = None,
    street_photos: int | None = None,
    render_images: bool = True,
    workers: int | None = None,
) -> SeedReport:
    """Generate the synthetic mall and write it to the staging DB and ``data_dir``.

    ``now`` is the time base of availability snapshots (default: current time).
    ``render_images=False`` skips catalog JPEGs (they can still be rendered lazily by the
    image server). ``workers`` defaults to the CPU count.
    """
    data_dir = Path(data_dir)
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    workers = workers or os.cpu_count() or 1
    base_url = image_base_url.rstrip("/")
    report = SeedReport(scale=scale, seed=seed)
    t0 = time.perf_counter()

    catalog = generate_catalog(seed, scale)
    plan = plan_availability(catalog, seed, now)
    in_stock = plan.in_stock_malls()
    report.timings["generate"] = time.perf_counter() - t0
    report.malls, report.brands = len(catalog.malls), len(catalog.brands)
    report.stores, report.skus = len(catalog.stores), len(catalog.skus)
    report.image_urls = sum(s.n_images for s in catalog.skus)
    report.availability_pairs = plan.n_pairs

    t = time.perf_counter()
    with psycopg.connect(staging_url) as conn:
        report.availability_rows = _write_db(conn, catalog, plan, base_url, now)
    report.timings["db"] = time.perf_counter() - t

    # Data directory: drop catalog images of a different generation, then (re)write.
    t = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    old = read_manifest(data_dir)
    same = (
        bool(old)
        and old is not None
        and (old.get("seed"), old.get("scale"), old.get("render_version")) == (seed, scale, RENDER_VERSION)
    )
    if not same and (images_root(data_dir) / "catalog").exists():
        shutil.rmtree(images_root(data_dir) / "catalog")
    manifest = {
        "version": 1,
        "generator": "unde.synthetic",
        "seed": seed,
        "scale": scale,
        "render_version": RENDER_VERSION,
        "lazy_images": scale in LAZY_SCALES or not render_images,
        "image_base_url": base_url,
        "now": now.isoformat(),
    }
    write_bytes_atomic(data_dir / MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
    report.lazy_images = bool(manifest["lazy_images"])
    if not report.lazy_images:
        batches = [(str(data_dir), b, same) for b in _split(list(catalog.skus), max(workers * 4, 1))]
        report.images_rendered = sum(_run_parallel(_render_batch, batches, workers))
    report.timings["images"] = time.perf_counter() - t

    t = time.perf_counter()
    n_photos = STREET_PHOTOS_PER_SCALE[scale] if street_photos is None else street_photos
    sdir = street_dir(data_dir)
    sdir.mkdir(parents=True, exist_ok=True)
    for stale in sdir.glob("street-*.jpg"):
        stale.unlink()
    jobs = [(catalog, in_stock, idx, str(sdir)) for idx in _split(list(range(n_photos)), workers)]
    records = [r for batch in _run_parallel(_street_batch, jobs, workers) for r in batch]
    records.sort(key=lambda r: r["photo_id"])
    gt = {"version": GROUND_TRUTH_VERSION, "photos": records}
    write_bytes_atomic(sdir / "ground_truth.json", json.dumps(gt, indent=1).encode())
    report.street_photos = len(records)
    report.street_items = sum(len(r["items"]) for r in records)
    report.timings["street"] = time.perf_counter() - t
    report.timings["total"] = time.perf_counter() - t0
    return report
