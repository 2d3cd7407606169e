"""The catalog search (`unde.retrieval.search`) at the production shape, against the exact answer.

The production query: the 50 SKUs nearest to a street crop among the brands of the shopper's
mall, each SKU scored by its best photo. Measured on one embedded PostgreSQL 18 + pgvector 0.8:
- the catalog: 47K SKUs of 1–7 photos each (≈ 235K photos × 512), one brand of single-photo
  SKUs, 40 Zipf-sized brands; CLIP-like vectors ``a·cone + b·category + c·style + d·sku +
  e·photo`` (random pairs ≈ 0.45 cosine, same-SKU photos ≈ 0.9; each brand designs in 15 of
  120 styles, so neighbourhoods are brand-homogeneous, the hard case for a filtered index);
- street-like queries: a SKU's direction plus three times the photo noise, from any brand;
- filters from the smallest brand through the single-photo brand, a median and the largest
  brand, malls of ~10 %, ~30 % and ~70 % of the rows, to no filter;
- the truth: every SKU's best photo by exact cosine in numpy, the 50 best SKUs.
Figures: SKU recall@50 (mean, worst single query over all filters), the fewest SKUs returned
where the filter holds ≥ 50, p50/p99 latency at the client over all filters together, the
index build time; the same-run baseline is the exact search in PostgreSQL (every photo of the
filter ranked, best per SKU), timed on the same queries.

The database lives in its own embedded server under bench/.cache/pg; the table, the SKU means
and the index are built once and reused while LAYOUT and the generator parameters match.
"""

from __future__ import annotations

import asyncio
import math
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from bench.common import CACHE, figure, percentile, print_table
from unde.db.embedded import embedded_base_url, ensure_database, restart_embedded, with_database
from unde.db.migrate import apply_migrations
from unde.db.pgvector import installed_version
from unde.db.pool import open_pool
from unde.retrieval.search import SearchTuning, search
from unde.retrieval.sku_vectors import ensure_skus, maintain_index
from unde.settings import REPO_ROOT

DB_NAME = "bench_search"
MODEL_VERSION = "bench-clustered-v2"
SEED = 11
DIM = 512
N_SKUS = 47_000
SOLO_SKUS = 1_500  # the single-photo brand
N_BRANDS = 40
N_CATEGORIES = 6
STYLES_PER_CATEGORY = 20
STYLES_PER_BRAND = 15
#: Photos per SKU 1..7 (mean ≈ 5.1).
PHOTO_COUNTS = np.array([0.03, 0.05, 0.09, 0.14, 0.19, 0.23, 0.27])
WEIGHTS = {"cone": 0.45, "category": 0.15, "style": 0.12, "sku": 0.18, "photo": 0.10}
QUERY_NOISE = 3.0
K = 50
LAYOUT = "v4-sku-ivfflat"
#: A production pgvector node keeps the table and its indexes in shared buffers.
SERVER_SETTINGS = {"shared_buffers": "2GB", "effective_cache_size": "8GB", "jit": "off"}

Search = Callable[[np.ndarray, Sequence[str] | None], Awaitable[list[tuple[str, str]]]]


@dataclass(frozen=True, slots=True)
class Catalog:
    vectors: np.ndarray  # (photos, DIM), rows grouped by SKU
    sku_of_row: np.ndarray
    sku_brand: np.ndarray  # brand index per SKU (N_BRANDS = the single-photo brand)
    sku_vectors: np.ndarray  # noiseless SKU directions (for queries)

    @property
    def rows(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def skus(self) -> int:
        return int(self.sku_brand.shape[0])


def _units(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def brand_name(index: int) -> str:
    return "solo" if index == N_BRANDS else f"brand{index:02d}"


def sku_name(index: int) -> str:
    return f"SKU{index:06d}"


def generate_catalog(seed: int = SEED) -> Catalog:
    """The clustered catalog of the module docstring (deterministic in `seed`)."""
    rng = np.random.default_rng(seed)
    n_styles = N_CATEGORIES * STYLES_PER_CATEGORY
    cone, categories, styles = _units(rng, 1)[0], _units(rng, N_CATEGORIES), _units(rng, n_styles)
    sizes = 1.0 / np.arange(1, N_BRANDS + 1) ** 0.8
    regular = N_SKUS - SOLO_SKUS
    sku_brand = np.concatenate([rng.choice(N_BRANDS, size=regular, p=sizes / sizes.sum()),
                                np.full(SOLO_SKUS, N_BRANDS)])
    brand_styles = np.stack([rng.choice(n_styles, STYLES_PER_BRAND, replace=False) for _ in range(N_BRANDS + 1)])
    sku_style = brand_styles[sku_brand, rng.integers(0, STYLES_PER_BRAND, size=N_SKUS)]
    w = {key: math.sqrt(value) for key, value in WEIGHTS.items()}
    sku_vectors = (w["cone"] * cone + w["category"] * categories[sku_style // STYLES_PER_CATEGORY]
                   + w["style"] * styles[sku_style] + w["sku"] * _units(rng, N_SKUS))
    photos = np.concatenate([rng.choice(7, size=regular, p=PHOTO_COUNTS / PHOTO_COUNTS.sum()) + 1,
                             np.ones(SOLO_SKUS, dtype=np.int64)])
    sku_of_row = np.repeat(np.arange(N_SKUS), photos)
    vectors = sku_vectors[sku_of_row] + w["photo"] * _units(rng, len(sku_of_row))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Catalog(vectors.astype(np.float32), sku_of_row, sku_brand, sku_vectors.astype(np.float32))


def make_queries(catalog: Catalog, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    skus = rng.integers(0, catalog.skus, size=n)
    q = catalog.sku_vectors[skus] + math.sqrt(WEIGHTS["photo"]) * QUERY_NOISE * _units(rng, n)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def filter_sets(catalog: Catalog) -> list[tuple[str, list[str] | None]]:
    """From the smallest brand to ~70 % of the rows, and no filter."""
    rows = np.bincount(catalog.sku_brand[catalog.sku_of_row], minlength=N_BRANDS + 1)
    order = [int(b) for b in np.argsort(rows[:N_BRANDS])]  # smallest first
    sets: list[tuple[str, list[str] | None]] = [
        ("smallest brand", [brand_name(order[0])]),
        ("single-photo brand", [brand_name(N_BRANDS)]),
        ("median brand", [brand_name(order[N_BRANDS // 2])]),
        ("largest brand", [brand_name(order[-1])])]
    rng = np.random.default_rng(5)
    for share in (0.10, 0.30, 0.70):
        chosen: list[int] = []
        for b in rng.permutation(N_BRANDS + 1):
            if rows[chosen].sum() >= share * rows.sum():
                break
            chosen.append(int(b))
        sets.append((f"mall ~{share:.0%} of rows ({len(chosen)} brands)", [brand_name(b) for b in chosen]))
    sets.append(("no filter", None))
    return sets


def truth(catalog: Catalog, queries: np.ndarray, brands: list[str] | None, k: int = K) -> list[set[int]]:
    """Per query, the k SKUs whose best photo is nearest (exact, numpy)."""
    allowed = np.ones(catalog.skus, dtype=bool) if brands is None else np.isin(
        np.array([brand_name(b) for b in range(N_BRANDS + 1)])[catalog.sku_brand], brands)
    rows = np.nonzero(allowed[catalog.sku_of_row])[0]
    owners = catalog.sku_of_row[rows]
    starts = np.concatenate([[0], np.nonzero(np.diff(owners))[0] + 1])
    best = np.maximum.reduceat(catalog.vectors[rows] @ queries.T, starts, axis=0)  # (skus, queries)
    skus = owners[starts]
    return [set(skus[np.argsort(-best[:, i])[:k]].tolist()) for i in range(len(queries))]


def server_url() -> str:
    """The bench's embedded server (bench/.cache/pg) with SERVER_SETTINGS, and its database."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        admin = embedded_base_url(CACHE)
        with psycopg.connect(admin, autocommit=True) as conn:
            stale = [name for name, value in SERVER_SETTINGS.items()
                     if (conn.execute(f"SHOW {name}").fetchone() or [None])[0] != value]
            for name in stale:
                conn.execute(f"ALTER SYSTEM SET {name} = '{SERVER_SETTINGS[name]}'")
        if stale:
            admin = restart_embedded(CACHE)
    ensure_database(admin, DB_NAME)
    return with_database(admin, DB_NAME)


def fingerprint(catalog: Catalog) -> str:
    return f"{LAYOUT}:{MODEL_VERSION}:{SEED}:{catalog.rows}:{float(catalog.vectors[7, 3]):.6f}"


def copy_photos(conn: psycopg.Connection[Any], catalog: Catalog) -> None:
    with conn.cursor().copy("COPY sku_image_embeddings (sku_id, brand, image_url, image_rank, image_hash, "
                            "embedding, model_version, metadata) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["text", "text", "text", "int2", "text", "vector", "text", "jsonb"])
        rank = 0
        for i in range(catalog.rows):
            sku = int(catalog.sku_of_row[i])
            rank = rank + 1 if i and catalog.sku_of_row[i - 1] == sku else 0
            brand = brand_name(int(catalog.sku_brand[sku]))
            cp.write_row((sku_name(sku), brand, f"https://cdn.test/{brand}/{sku}/{rank}.jpg", rank,
                          f"h{i}", catalog.vectors[i], MODEL_VERSION, Jsonb({"name": sku_name(sku)})))


async def _upkeep(url: str) -> tuple[float, float, int]:
    """SKU means from the photos, then the IVFFlat index sized for them (the indexer's upkeep)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        await ensure_skus(conn, MODEL_VERSION, batch=50_000)
        means_s = time.perf_counter() - started
        started = time.perf_counter()
        report = await maintain_index(conn)
        return means_s, time.perf_counter() - started, report.lists


def ensure_loaded(url: str, catalog: Catalog) -> dict[str, float]:
    """Load once per fingerprint; returns the build figures (from the cache on reuse)."""
    apply_migrations(url, "production", REPO_ROOT / "sql")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_build (fingerprint text PRIMARY KEY, figures jsonb)")
        row = conn.execute("SELECT figures FROM bench_build WHERE fingerprint = %s", (fingerprint(catalog),)).fetchone()
        if row is not None:
            return dict(row[0])
        register_vector(conn)
        conn.execute("TRUNCATE sku_image_embeddings, sku_embeddings, bench_build")
        started = time.perf_counter()
        copy_photos(conn, catalog)
        load_s = time.perf_counter() - started
        means_s, build_s, lists = asyncio.run(_upkeep(url))
        conn.execute("VACUUM ANALYZE sku_image_embeddings")
        conn.execute("VACUUM ANALYZE sku_embeddings")
        size = conn.execute("SELECT pg_relation_size('sku_embeddings_ivf')").fetchone()
        figures = {"load_s": load_s, "means_s": means_s, "build_s": build_s, "lists": lists,
                   "index_mb": (size[0] if size else 0) / 2**20}
        conn.execute("INSERT INTO bench_build VALUES (%s, %s)", (fingerprint(catalog), Jsonb(figures)))
        return figures


def prewarm(conn: psycopg.Connection[Any]) -> None:
    """Table and indexes into shared buffers, as on a long-running server (bitmap heap scans
    read through the buffers; a seq scan would use a small ring)."""
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SELECT count(image_hash), sum(vector_dims(embedding)) FROM sku_image_embeddings "
                     "WHERE brand >= ''")
        conn.execute("SELECT count(*), sum(vector_dims(embedding)) FROM sku_embeddings WHERE brand >= ''")


@dataclass(slots=True)
class Measured:
    recalls: list[float]
    latencies_ms: list[float]
    min_skus: int  # fewest SKUs where the filter holds ≥ K
    per_filter: list[tuple[str, float, float, float, float]]  # name, recall mean, worst, p50, p99


async def measure(search_fn: Search, catalog: Catalog, queries: np.ndarray,
                  filters: list[tuple[str, list[str] | None]], truths: list[list[set[int]]],
                  warmup: int = 20) -> Measured:
    for q in queries[:warmup]:
        await search_fn(q, None)
    out = Measured([], [], K, [])
    for (name, brands), truth_sets in zip(filters, truths, strict=True):
        recalls, lat = [], []
        for q, want in zip(queries, truth_sets, strict=True):
            started = time.perf_counter()
            got = await search_fn(q, brands)
            lat.append((time.perf_counter() - started) * 1000)
            skus = {int(s[3:]) for _, s in got}
            if len(want) >= K:
                out.min_skus = min(out.min_skus, len(skus))
            recalls.append(len(skus & want) / len(want))
        out.recalls += recalls
        out.latencies_ms += lat
        out.per_filter.append((name, float(np.mean(recalls)), min(recalls), percentile(lat, 50), percentile(lat, 99)))
    return out


def exact_sql(brands: list[str] | None) -> str:
    where = "model_version = %(mv)s" + ("" if brands is None else " AND brand = ANY(%(brands)s)")
    return (f"SELECT brand, sku_id FROM (SELECT DISTINCT ON (brand, sku_id) brand, sku_id, embedding <=> %(q)s AS d "
            f"FROM sku_image_embeddings WHERE {where} ORDER BY brand, sku_id, d) AS best ORDER BY d LIMIT %(k)s")


def run(quick: bool) -> dict[str, dict[str, Any]]:
    catalog = generate_catalog()
    url = server_url()
    build = ensure_loaded(url, catalog)
    n = 40 if quick else 100
    queries = make_queries(catalog, n, seed=23)
    filters = filter_sets(catalog)
    truths = [truth(catalog, queries, brands) for _, brands in filters]
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        prewarm(conn)
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()

    async def product() -> Measured:
        pool = await open_pool(url, name="bench", min_size=1, max_size=2, vector=True)
        try:
            async with pool.connection() as conn:
                assert await installed_version(conn) == (version[0] if version else None)

            async def one(q: np.ndarray, brands: Sequence[str] | None) -> list[tuple[str, str]]:
                hits = await search(pool, q, model_version=MODEL_VERSION, k=K, brands=brands, tuning=SearchTuning())
                return [(h.brand, h.sku_id) for h in hits]

            return await measure(one, catalog, queries, filters, truths)
        finally:
            await pool.close()

    async def exact() -> Measured:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            from pgvector.psycopg import register_vector_async
            await register_vector_async(conn)

            async def one(q: np.ndarray, brands: Sequence[str] | None) -> list[tuple[str, str]]:
                async with conn.transaction():
                    await conn.execute("SET LOCAL enable_indexscan = off")
                    rows = await (await conn.execute(exact_sql(list(brands) if brands else None),
                                                     {"mv": MODEL_VERSION, "q": q, "k": K,
                                                      "brands": list(brands) if brands else None})).fetchall()
                return [(str(b), str(s)) for b, s in rows]

            few = max(10, n // 5)
            return await measure(one, catalog, queries[:few], filters, [t[:few] for t in truths], warmup=2)

    ours = asyncio.run(product())
    baseline = asyncio.run(exact())
    print_table("search per filter (recall mean / worst, p50 / p99 ms)",
                [(name, f"{mean:.3f} / {worst:.2f}   {p50:.1f} / {p99:.1f}", "")
                 for name, mean, worst, p50, p99 in ours.per_filter])
    print_table("exact baseline per filter (p50 / p99 ms)",
                [(name, f"{p50:.1f} / {p99:.1f}", "") for name, _, _, p50, p99 in baseline.per_filter])
    exact_p50, exact_p99 = percentile(baseline.latencies_ms, 50), percentile(baseline.latencies_ms, 99)
    return {
        "pgvector_version": figure(version[0] if version else None, ""),
        "pgvector_rows": figure(catalog.rows, "photos", "SKUs", catalog.skus),
        "search_sku_recall50_mean": figure(round(float(np.mean(ours.recalls)), 4), "ratio"),
        "search_sku_recall50_worst": figure(round(min(ours.recalls), 4), "ratio"),
        "search_min_skus": figure(ours.min_skus, "SKUs"),
        "search_p50_ms": figure(round(percentile(ours.latencies_ms, 50), 2), "ms",
                                "exact search in PostgreSQL, same queries", round(exact_p50, 2)),
        "search_p99_ms": figure(round(percentile(ours.latencies_ms, 99), 2), "ms",
                                "exact search in PostgreSQL, same queries", round(exact_p99, 2)),
        "search_build_s": figure(round(build["build_s"], 2), "s", "SKU means from the photos",
                                 round(build["means_s"], 2)),
        "search_index_lists": figure(build["lists"], "lists"),
        "search_index_mb": figure(round(build["index_mb"], 1), "MiB"),
    }
