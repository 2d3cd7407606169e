"""Catalog indexing end to end vs the bare model, and the re-run that finds nothing new.

One run, one embedder (`load_embedder(IndexerSettings(), "throughput")`): the ViT-B/32-shaped
ONNX export that `bench/embedder.py` caches (FashionCLIP's compute, random weights) when it
exists — so "bare model" means a model of production cost — else MODEL_DIR, else the offline
descriptor (whose ~100 img/s makes the run I/O-bound rather than model-bound):

- baseline `indexing_bare_embed_img_s`: the model alone on the catalog's images, decoded in
  advance, in batches of INDEX_BATCH_SIZE;
- `indexing_img_s`: plan + queue consumer on the synthetic catalog served by the synthetic
  image server over loopback — claim, fetch, SHA-256, known-hash lookup, decode, embed (worker
  thread, overlapped with fetching the next batch), INSERT + mark done per batch;
- `indexing_rerun_s`: plan + consumer again when everything is indexed (nothing is fetched or
  embedded).

Data: `unde.synthetic.seed.seed_dataset` at scale small (150 SKUs, ~900 JPEGs) into a staging
database of the bench's own embedded server (bench/.cache/indexing); the images are rendered
once and reused. The production database is recreated each run.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from unde.db.embedded import DatabaseUrls, embedded_base_url, ensure_database, with_database
from unde.db.migrate import apply_migrations
from unde.indexing.service import open_service
from unde.models.base import ImageEmbedder
from unde.settings import REPO_ROOT, IndexerSettings, load_settings
from unde.vision.images import decode_image

CACHE = REPO_ROOT / "bench" / ".cache" / "indexing"
SCALE = "small"
SEED = 7


def _databases() -> DatabaseUrls:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        admin = embedded_base_url(CACHE)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier("bench_index_production")))
    ensure_database(admin, "bench_index_production")
    ensure_database(admin, "bench_index_staging")
    urls = DatabaseUrls(with_database(admin, "bench_index_production"),
                        with_database(admin, "bench_index_staging"))
    apply_migrations(urls.production, "production", REPO_ROOT / "sql")
    apply_migrations(urls.staging, "staging", REPO_ROOT / "sql")
    return urls


def _catalog_files(staging_url: str, data_dir: Path, base_url: str) -> list[Path]:
    with psycopg.connect(staging_url) as conn:
        rows = conn.execute("SELECT jsonb_array_elements_text(image_urls) FROM raw_products").fetchall()
    return [data_dir / "images" / url.removeprefix(base_url + "/") for (url,) in rows]


def bare_throughput(embedder: ImageEmbedder, files: list[Path], batch: int, max_pixels: int) -> float:
    """Images/s of the model alone on pre-decoded images."""
    images = [decode_image(path.read_bytes(), max_pixels=max_pixels) for path in files]
    embedder.embed(images[:batch])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(images), batch):
        embedder.embed(images[i:i + batch])
    return len(images) / (time.perf_counter() - started)


async def _index(settings: IndexerSettings, urls: DatabaseUrls,
                 embedder: ImageEmbedder) -> tuple[int, float, float]:
    service = await open_service(settings, embedder=embedder, urls=urls)
    try:
        started = time.perf_counter()
        report = await service.plan()
        counts = await service.consume()
        total = time.perf_counter() - started
        assert counts.claimed == report.enqueued and counts.dead == 0, counts.as_dict()
        return counts.claimed, counts.seconds, total
    finally:
        await service.close()


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """Measure and print; return the named figures."""
    from unde.models.registry import load_embedder
    from unde.synthetic.image_server import ImageServer
    from unde.synthetic.seed import seed_dataset

    CACHE.mkdir(parents=True, exist_ok=True)
    urls = _databases()
    data_dir = CACHE / "data"
    with ImageServer(data_dir) as server:
        host = server.base_url.removeprefix("http://")
        seed_dataset(urls.staging, data_dir, scale=SCALE, seed=SEED, image_base_url=server.base_url,
                     street_photos=0)
        vit = CACHE.parent / "vit_b32" / "fp32"
        model = {"embed_provider": "fashionclip", "model_dir": vit} if (vit / "model.json").exists() else {}
        settings = load_settings(IndexerSettings, allowed_image_hosts=[host], **model)
        embedder = load_embedder(settings, "throughput")
        files = _catalog_files(urls.staging, data_dir, server.base_url)
        if quick:
            files = files[: max(settings.index_batch_size * 4, len(files) // 2)]
        bare = bare_throughput(embedder, files, settings.index_batch_size, settings.image_max_pixels)
        images, consume_s, total_s = asyncio.run(_index(settings, urls, embedder))
        rerun_images, _, rerun_s = asyncio.run(_index(settings, urls, embedder))
    end_to_end = images / consume_s
    print(f"\nindexing: {images} catalog images, model {embedder.model_version}, "
          f"batch {settings.index_batch_size}, fetch concurrency {settings.index_fetch_concurrency}")
    print(f"  bare model on pre-decoded images : {bare:8.1f} img/s ({len(files)} images)")
    print(f"  fetch→hash→embed→write (consumer): {end_to_end:8.1f} img/s  = {end_to_end / bare:.2f}× bare "
          f"(plan + consume {total_s:.1f}s)")
    print(f"  re-run with nothing new          : {rerun_s:8.2f} s ({rerun_images} images processed)")
    return {
        "indexing_img_s": {"value": round(end_to_end, 2), "unit": "img/s",
                           "baseline": "indexing_bare_embed_img_s", "baseline_value": round(bare, 2)},
        "indexing_bare_embed_img_s": {"value": round(bare, 2), "unit": "img/s"},
        "indexing_rerun_s": {"value": round(rerun_s, 2), "unit": "s"},
    }


if __name__ == "__main__":
    import sys

    for key, figure in run(quick="--quick" in sys.argv).items():
        print(f"{key} = {figure}")
