"""Does the offline reranker improve on the raw search order? Top-1 before/after.

Data: the synthetic catalog and street photos (rendered by `unde.synthetic`, cached by
bench/descriptor_quality.py under bench/.cache/descriptor_data/). Every ground-truth box of
an in-catalog garment is cropped and embedded with the offline descriptor; every catalog
photo is embedded and stored in a real production DB (embedded PostgreSQL + pgvector,
bench/.cache/rerank_pg/) — the reranker reads them back with its one SQL statement.

- before: the raw search order — SKUs of the crop's category ranked by the best cosine
  similarity of any of their photos (what pgvector + best_per_sku return), top 20.
- after: `OfflineReranker.rerank` of those 20 with the crop's tags as the offline pipeline
  has them: the category (from detection) and colour / pattern / type / material from the
  gateway's offline tagger (`unde.vision.tagger.tag_garment`; it reports unknown type and
  material, which then count for nothing). No ground-truth attribute is given to it.
- oracle: the same with the ground-truth type/colour/pattern/material as tags — an upper
  bound for a perfect tagger, reported for context only.

Run: ``python -m bench.rerank_quality [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from PIL import Image

from bench.descriptor_quality import CACHE as DATA
from bench.descriptor_quality import SEED, load_dataset
from unde.db.embedded import embedded_base_url, ensure_database, with_database
from unde.db.migrate import apply_migrations
from unde.db.pool import open_pool
from unde.models.descriptor import MODEL_VERSION, DescriptorEmbedder
from unde.rerank.candidates import RerankCandidate
from unde.rerank.combine import Weights
from unde.rerank.offline import OfflineReranker
from unde.settings import REPO_ROOT
from unde.vision.tagger import tag_garment

PG_DIR = REPO_ROOT / "bench" / ".cache" / "rerank_pg"
DB_NAME = "rerank_bench"
TOP_N = 20


@dataclass(frozen=True, slots=True)
class Query:
    """One street crop: its true SKU, category, measured colour and ground-truth tags."""

    sku: str
    category: str
    tags: dict[str, Any]
    truth: dict[str, Any]


def _catalog_metadata() -> dict[str, dict[str, Any]]:
    from unde.synthetic.catalog import generate_catalog
    from unde.synthetic.render import image_kinds

    catalog = generate_catalog(SEED, "small")
    return {f"{s.brand}/{s.external_id}": {
        "category": s.category, "product_type": s.product_type, "colour": s.colour,
        "pattern": s.pattern, "material": s.material, "image_kinds": image_kinds(s)}
        for s in catalog.skus}


def _offline_tags(crop: Image.Image, category: str) -> dict[str, Any]:
    """What the gateway's offline /tag says about the crop (category from detection)."""
    tags = tag_garment(crop, category)
    return {"category": category, "type": tags.type, "color": tags.color, "pattern": tags.pattern,
            "material": tags.material, "probabilities": dict(tags.probabilities)}


def _queries(n_street: int) -> list[Query]:
    index = json.loads((DATA / "index.json").read_text())
    queries: list[Query] = []
    for row in index["street"][:n_street]:
        photo = Image.open(DATA / row["file"]).convert("RGB")
        for item in row["items"]:
            if item["in_catalog"]:
                crop = photo.crop(tuple(item["bbox"]))
                truth = {"type": item["product_type"], "color": item["colour"],
                         "pattern": item["pattern"], "material": item["material"]}
                queries.append(Query(f"{item['brand']}/{item['external_id']}", item["category"],
                                     _offline_tags(crop, item["category"]), truth))
    return queries


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
                  allowed: set[str]) -> list[tuple[str, float]]:
    best: dict[str, float] = {}
    for sku, score in zip(gallery_sku, gallery @ query, strict=True):
        if sku in allowed and score > best.get(sku, -2.0):
            best[sku] = float(score)
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]


async def _evaluate(url: str, vectors: np.ndarray, queries: list[Query], gallery: np.ndarray,
                    gallery_sku: list[str], metadata: dict[str, dict[str, Any]]) -> dict[str, float]:
    pool = await open_pool(url, name="bench", min_size=1, max_size=2, vector=True)
    reranker = OfflineReranker(pool, Weights(0.7, 0.3))
    hits = {"before": 0, "after": 0, "oracle": 0, "in_top_n": 0}
    try:
        for vector, query in zip(vectors, queries, strict=True):
            allowed = {s for s, m in metadata.items() if m["category"] == query.category}
            order = _search_order(vector, gallery, gallery_sku, allowed)
            hits["before"] += order[0][0] == query.sku
            hits["in_top_n"] += any(sku == query.sku for sku, _ in order)
            candidates = [RerankCandidate(sku.split("/", 1)[0], sku.split("/", 1)[1], score, ("u",),
                                          metadata[sku]) for sku, score in order]
            for name, crop_tags in (("after", query.tags), ("oracle", query.truth)):
                ranked = await reranker.rerank(candidates, crop_tags, embedding=vector.tolist(),
                                               model_version=MODEL_VERSION)
                hits[name] += ranked[0].sku_id == query.sku
    finally:
        await pool.close()
    return {name: count / max(len(queries), 1) for name, count in hits.items()}


def measure(n_street: int) -> dict[str, float]:
    """Top-1 accuracy before/after rerank over the crops of the first `n_street` photos."""
    data = load_dataset(n_street)
    queries = _queries(n_street)
    assert [q.sku for q in queries] == data.street_sku
    embedder = DescriptorEmbedder()
    gallery = embedder.embed(data.catalog)
    crops = embedder.embed(data.street)
    admin = embedded_base_url(PG_DIR)
    ensure_database(admin, DB_NAME)
    url = with_database(admin, DB_NAME)
    apply_migrations(url, "production", REPO_ROOT / "sql")
    _store(url, gallery, data.catalog_sku)
    result = asyncio.run(_evaluate(url, crops, queries, gallery, data.catalog_sku, _catalog_metadata()))
    for name in ("color", "pattern"):
        result[f"{name}_accuracy"] = sum(q.tags[name] == q.truth[name] for q in queries) / max(
            len(queries), 1)
    result["n"] = len(queries)
    return result


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """Measure and print top-1 before/after; figures in the bench results format."""
    r = measure(40 if quick else 150)
    before = round(r["before"], 4)
    figures: dict[str, dict[str, Any]] = {
        "rerank_top1_before": {"value": before, "unit": "top-1 accuracy"},
        "rerank_top1_after": {"value": round(r["after"], 4), "unit": "top-1 accuracy",
                              "baseline": "raw search order", "baseline_value": before},
        "rerank_top1_oracle_tags": {"value": round(r["oracle"], 4), "unit": "top-1 accuracy",
                                    "baseline": "raw search order", "baseline_value": before},
        "rerank_true_sku_in_top20": {"value": round(r["in_top_n"], 4), "unit": "share"},
    }
    print(f"offline rerank on {int(r['n'])} street crops (descriptor {MODEL_VERSION}, top {TOP_N})")
    print(f"  {'figure':<34}{'value':>8}")
    for name, label in (("before", "top-1 raw search order"), ("after", "top-1 after offline rerank"),
                        ("oracle", "top-1 with ground-truth tags"),
                        ("in_top_n", f"true SKU in top {TOP_N} (ceiling)"),
                        ("color_accuracy", "offline tagger colour correct"),
                        ("pattern_accuracy", "offline tagger pattern correct")):
        print(f"  {label:<34}{r[name]:>8.3f}")
    if r["before"]:
        print(f"  after / before = {r['after'] / r['before']:.2f}×")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
