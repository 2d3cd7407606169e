"""pgvector at 235K catalog photos × 512: index build, and the mall-filtered top-50 query.

What is measured (one run, one machine): build time of the global HNSW index (m 16,
ef_construction 64) and of the search cells with the SKU vectors
(`unde.retrieval.cells.ensure_cells`: k-means on a 50K sample, every photo assigned, every
SKU's mean vector written); for brand filters keeping from one brand to all of them, the
latency (p50/p99 client side, after warm-up searches, and a server-side EXPLAIN ANALYZE sample
of the chosen plan, which separates the machine's load and client overhead from the query),
the rows returned and recall@50 of `unde.retrieval.knn.knn_images` (the default: the SKU stage
ranked in the process by the SKU means and the held photos, `unde.retrieval.sku_memory`, then
the chosen SKUs' photos in the server) against the exact top-50 (computed in numpy over the
same float32 vectors, filter applied first). Baselines in the same run, on the same queries:
the SKU means alone in the process (a pool whose memory cap fits no photos), the SKU stage
ranked by the server (`memory_mb=0`, the previous default), the photo cells (`use_skus=False`, split over 2
connections), the global-index design (`use_cells=False`: the
global HNSW with raised ef + over-fetch, escalation and an exact fallback), the naive filtered
HNSW query at ef_search 40, and the exact scan. The exact answers are computed before the timed
loop, so the numpy scan of 480 MB does not evict the server's caches between timed queries. The
machine's load average is printed with the figures.

The vectors have CLIP-like neighbourhood structure, not uniform noise. Every photo is
``a·cone + b·category + c·style + d·sku + e·photo`` (unit Gaussian directions, then
normalised) with a² = .45, b² = .15, c² = .12, d² = .18, e² = .10: a shared cone (random
pairs have cosine ≈ 0.45, as CLIP image embeddings do), 6 categories, 120 styles (20 per
category), SKUs of 5 photos each (same-SKU photos ≈ 0.90). Brands are Zipf-sized (40 brands,
exponent 0.8) and each brand designs in only 15 styles, so neighbourhoods are brand-
homogeneous — the hard case for post-filtered HNSW. Queries are street-photo-like: a SKU's
vector with three times the photo noise (domain shift), from SKUs of any brand.

The database lives in its own embedded server under bench/.cache/pg; the table, its cells, the
SKU vectors and the global index are built once (binary COPY, `ensure_cells`, CREATE INDEX)
and reused while the generator parameters and LAYOUT match.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from unde.db.embedded import embedded_base_url, ensure_database, restart_embedded, with_database
from unde.db.migrate import apply_migrations
from unde.db.pool import open_pool
from unde.retrieval.cells import CELL_ROWS, CellReport, ensure_cells
from unde.retrieval.knn import KnnQuery, forget_profile, knn_images, plan_for, plan_statement
from unde.retrieval.knn_catalog import refreshing
from unde.retrieval.knn_plan import SearchPlan, settings_sql
from unde.retrieval.sku_cells import SKU_ROWS
from unde.retrieval.sku_memory import SKU_MEMORY_MB, limit_blas_threads
from unde.settings import REPO_ROOT

CACHE = REPO_ROOT / "bench" / ".cache"
DB_NAME = "bench_pgvector"
MODEL_VERSION = "bench-clustered-v1"
SEED = 11
DIM = 512
PHOTOS_PER_SKU = 5
N_SKUS = 47_000
N_BRANDS = 40
N_CATEGORIES = 6
STYLES_PER_CATEGORY = 20
STYLES_PER_BRAND = 15
WEIGHTS = {"cone": 0.45, "category": 0.15, "style": 0.12, "sku": 0.18, "photo": 0.10}
QUERY_NOISE = 3.0
K = 50
EF_SEARCH = 200
#: Bump when the stored layout changes (v2: search cells, no per-brand indexes; v3: SKU vectors).
LAYOUT = "v3-skus"


@dataclass(frozen=True, slots=True)
class Catalog:
    """Generated photos: vectors (n, 512) and per-row brand index and SKU index."""

    vectors: np.ndarray
    brand_of_row: np.ndarray
    sku_of_row: np.ndarray
    sku_vectors: np.ndarray  # noiseless SKU direction before photo noise (for queries)
    rng_state: int

    @property
    def rows(self) -> int:
        return int(self.vectors.shape[0])


def _units(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def brand_name(index: int) -> str:
    return f"brand{index:02d}"


def generate_catalog(seed: int = SEED, n_skus: int = N_SKUS) -> Catalog:
    """The clustered catalog described in the module docstring (deterministic in `seed`)."""
    rng = np.random.default_rng(seed)
    n_styles = N_CATEGORIES * STYLES_PER_CATEGORY
    cone = _units(rng, 1)[0]
    categories = _units(rng, N_CATEGORIES)
    styles = _units(rng, n_styles)
    sizes = 1.0 / np.arange(1, N_BRANDS + 1) ** 0.8
    sku_brand = rng.choice(N_BRANDS, size=n_skus, p=sizes / sizes.sum())
    brand_styles = np.stack([rng.choice(n_styles, STYLES_PER_BRAND, replace=False)
                             for _ in range(N_BRANDS)])
    sku_style = brand_styles[sku_brand, rng.integers(0, STYLES_PER_BRAND, size=n_skus)]
    sku_category = sku_style // STYLES_PER_CATEGORY
    w = {key: math.sqrt(value) for key, value in WEIGHTS.items()}
    sku_vectors = (w["cone"] * cone + w["category"] * categories[sku_category]
                   + w["style"] * styles[sku_style] + w["sku"] * _units(rng, n_skus))
    sku_of_row = np.repeat(np.arange(n_skus), PHOTOS_PER_SKU)
    vectors = sku_vectors[sku_of_row] + w["photo"] * _units(rng, n_skus * PHOTOS_PER_SKU)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Catalog(vectors.astype(np.float32), sku_brand[sku_of_row], sku_of_row,
                   sku_vectors.astype(np.float32), seed)


def make_queries(catalog: Catalog, n: int, seed: int) -> np.ndarray:
    """Street-like queries: a random SKU's direction plus QUERY_NOISE× the photo noise."""
    rng = np.random.default_rng(seed)
    skus = rng.integers(0, catalog.sku_vectors.shape[0], size=n)
    noise = math.sqrt(WEIGHTS["photo"]) * QUERY_NOISE * _units(rng, n)
    q = catalog.sku_vectors[skus] + noise
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def filter_sets(catalog: Catalog) -> list[tuple[str, list[str] | None]]:
    """Brand filters from one (small) brand to all brands."""
    counts = np.bincount(catalog.brand_of_row, minlength=N_BRANDS)
    order = list(np.argsort(counts))  # smallest first
    total = counts.sum()
    sets: list[tuple[str, list[str] | None]] = [
        ("1 smallest brand", [brand_name(order[0])]),
        ("1 median brand", [brand_name(order[N_BRANDS // 2])]),
        ("1 largest brand", [brand_name(order[-1])]),
    ]
    rng = np.random.default_rng(5)
    for share in (0.05, 0.10, 0.25, 0.5, 0.75):
        chosen: list[int] = []
        for b in rng.permutation(N_BRANDS):
            if counts[chosen].sum() >= share * total:
                break
            chosen.append(int(b))
        sets.append((f"{len(chosen)} brands ~{share:.0%} rows", [brand_name(b) for b in chosen]))
    sets.append(("all brands (no filter)", None))
    return sets


def _fingerprint(catalog: Catalog) -> str:
    return f"{LAYOUT}:{MODEL_VERSION}:{catalog.rng_state}:{catalog.rows}:{N_BRANDS}:{float(catalog.vectors[7, 3]):.6f}"


#: Server settings of the bench server: the HNSW graph (~0.5 GB at 235K × 512) and the hot
#: heap must fit in shared_buffers, as on a production pgvector node (the default 128 MB makes
#: every search copy pages from the OS cache).
SERVER_SETTINGS = {"shared_buffers": "3GB", "effective_cache_size": "8GB", "jit": "off"}


def database_url() -> str:
    """The bench's own embedded server (bench/.cache/pg), tuned, and its database."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        admin = embedded_base_url(CACHE)
        with psycopg.connect(admin, autocommit=True) as conn:
            current = {name: conn.execute(f"SHOW {name}").fetchone() for name in SERVER_SETTINGS}
            stale = [name for name, value in SERVER_SETTINGS.items()
                     if (current[name] or [None])[0] != value]
            for name in stale:
                conn.execute(f"ALTER SYSTEM SET {name} = '{SERVER_SETTINGS[name]}'")
        if stale:  # settings need a restart
            admin = restart_embedded(CACHE)
    ensure_database(admin, DB_NAME)
    return with_database(admin, DB_NAME)


def prewarm(conn: psycopg.Connection[Any], catalog: Catalog) -> float:
    """Bring heap, btree indexes and HNSW graph into shared_buffers, as on a long-running server.

    (pg_prewarm is not bundled.) A bitmap heap scan reads every heap page through the shared
    buffers (a seq scan would use a small ring), index-only scans read the cell index, the SKU
    vectors and every SKU's photos through the indexes searches use, and HNSW searches at ef
    1000 from many directions touch the graph.
    """
    started = time.perf_counter()
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SELECT count(image_hash) FROM sku_image_embeddings WHERE brand = ANY(%s)",
                     ([brand_name(b) for b in range(N_BRANDS)],))
        conn.execute("SELECT count(*) FROM sku_image_embeddings WHERE model_version = %s AND cell >= 0",
                     (MODEL_VERSION,))
        q = make_queries(catalog, 1, seed=98)[0]
        for cells in np.array_split(np.arange(cells_of(conn)), 64):  # both stages' indexes, as searches read them
            conn.execute("SELECT sum((s.embedding <=> %(q)s) + (p.embedding <=> %(q)s)) FROM sku_embeddings AS s "
                         "JOIN sku_image_embeddings AS p ON p.model_version = s.model_version "
                         "AND p.brand = s.brand AND p.sku_id = s.sku_id "
                         "WHERE s.model_version = %(mv)s AND s.cell = ANY(%(cells)s::int4[])",
                         {"q": q, "mv": MODEL_VERSION, "cells": cells.tolist()})
        conn.execute("SET LOCAL hnsw.ef_search = 1000")
        for q in make_queries(catalog, 150, seed=99):
            conn.execute("SELECT id FROM sku_image_embeddings ORDER BY embedding <=> %s LIMIT 1", (q,))
    return time.perf_counter() - started


def cells_of(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM embedding_cells WHERE model_version = %s", (MODEL_VERSION,)).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class Build:
    """Seconds spent loading the rows, training + assigning the cells, building the global HNSW."""

    load_s: float
    cells_s: float
    hnsw_s: float
    reused: bool


def ensure_loaded(url: str, catalog: Catalog) -> Build:
    """Load + cells + global index once, as a bulk catalog load would (rows first, then
    `ensure_cells`, then the HNSW build); rebuilds when the fingerprint differs."""
    apply_migrations(url, "production", REPO_ROOT / "sql")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_state (key text PRIMARY KEY, value text)")
        row = conn.execute("SELECT value FROM bench_state WHERE key = 'pgvector'").fetchone()
        if row and row[0].split("|")[0] == _fingerprint(catalog):
            load_s, cells_s, hnsw_s = (float(x) for x in row[0].split("|")[1:4])
            return Build(load_s, cells_s, hnsw_s, True)
        register_vector(conn)
        conn.execute("DROP INDEX IF EXISTS sku_image_embeddings_hnsw")
        conn.execute("TRUNCATE sku_image_embeddings, embedding_cells, sku_embeddings RESTART IDENTITY")
        started = time.perf_counter()
        _copy_rows(conn, catalog)
        conn.execute("VACUUM ANALYZE sku_image_embeddings")
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        report = asyncio.run(_cells(url))
        cells_s = time.perf_counter() - started
        print(f"cells: {report.trained} trained, {report.assigned} rows assigned, {report.skus} SKU vectors "
              f"written in {cells_s:.1f}s")
        conn.execute("VACUUM ANALYZE sku_image_embeddings")
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        started = time.perf_counter()
        conn.execute("CREATE INDEX sku_image_embeddings_hnsw ON sku_image_embeddings "
                     "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
        hnsw_s = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE sku_image_embeddings")
        conn.execute("INSERT INTO bench_state VALUES ('pgvector', %s) ON CONFLICT (key) "
                     "DO UPDATE SET value = EXCLUDED.value",
                     (f"{_fingerprint(catalog)}|{load_s:.1f}|{cells_s:.1f}|{hnsw_s:.1f}",))
        return Build(load_s, cells_s, hnsw_s, False)


async def _cells(url: str) -> CellReport:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await ensure_cells(conn, MODEL_VERSION)


def _copy_rows(conn: psycopg.Connection[Any], catalog: Catalog) -> None:
    columns = "sku_id, brand, image_url, image_rank, image_hash, embedding, model_version, metadata"
    with conn.cursor().copy(f"COPY sku_image_embeddings ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["text", "text", "text", "int2", "text", "vector", "text", "jsonb"])
        for row in range(catalog.rows):
            sku = int(catalog.sku_of_row[row])
            rank = row % PHOTOS_PER_SKU
            copy.write_row((f"S{sku:06d}", brand_name(int(catalog.brand_of_row[row])),
                            f"https://cdn.example/{sku}/{rank}.jpg", rank, f"h{row:08d}",
                            catalog.vectors[row], MODEL_VERSION, Jsonb({"name": "bench"})))


def exact_top(catalog: Catalog, query: np.ndarray, mask: np.ndarray | None, k: int) -> np.ndarray:
    """Row numbers of the exact top-k by cosine among rows in `mask` (numpy, float32)."""
    scores = catalog.vectors @ query
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    available = int(mask.sum()) if mask is not None else catalog.rows
    top = np.argpartition(-scores, min(k, available) - 1)[: min(k, available)]
    return top


def _naive(conn: psycopg.Connection[Any], q: np.ndarray, brands: list[str] | None, ef: int) -> list[int]:
    where = "model_version = %s" + (" AND brand = ANY(%s)" if brands is not None else "")
    params: list[Any] = [MODEL_VERSION] + ([brands] if brands is not None else [])
    with conn.transaction():
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
        rows = conn.execute(f"SELECT id FROM sku_image_embeddings WHERE {where} "
                            f"ORDER BY embedding <=> %s LIMIT {K}", [*params, q]).fetchall()
    return [r[0] - 1 for r in rows]  # ids are 1-based, in COPY order


def _percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


@dataclass(slots=True)
class Series:
    """Latency, recall and rows of one way of answering, over every filter and query."""

    latency_ms: list[float]
    recall: list[float]
    min_rows: int = K
    min_ratio: float = 1.0

    def add(self, ms: float, got: set[int], truth: set[int], expected: int) -> None:
        self.latency_ms.append(ms)
        self.recall.append(len(got & truth) / len(truth) if truth else 1.0)
        self.min_rows = min(self.min_rows, len(got))
        self.min_ratio = min(self.min_ratio, len(got) / expected if expected else 1.0)


def _series() -> Series:
    return Series([], [])


def server_ms(conn: psycopg.Connection[Any], plan: SearchPlan, q: np.ndarray,
              brands: list[str] | None) -> float:
    """Planning + execution time of a plan's (first) statement inside the server (EXPLAIN ANALYZE)."""
    statement, params = plan_statement(plan, MODEL_VERSION, q, brands)
    with conn.transaction():
        for name, value in settings_sql(plan):
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
        row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params).fetchone()
    assert row is not None
    out = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return float(out[0]["Planning Time"] + out[0]["Execution Time"])


def describe(plan: SearchPlan) -> str:
    if plan.kind in ("skus", "memory"):
        return f"{plan.kind} ({len(plan.cells)} cells)"
    if plan.kind == "cells":
        return f"cells ({len(plan.cells)} of them)"
    if plan.kind == "global":
        return f"global ef{plan.ef}"
    return "exact"


#: Connections a photo-cells scan is spread over (the gateway's SEARCH_PARALLEL default).
PARALLEL = 2


class Searcher:
    """The production path: `knn_images` on an async pool, driven from one event loop."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(open_pool(
            url, name="bench", min_size=PARALLEL + 1, max_size=PARALLEL + 1, statement_timeout_ms=60_000,
            vector=True))

    def hold_matrix(self, memory_mb: float = SKU_MEMORY_MB) -> float:
        """Start the pool's SKU matrix read (a first search) and wait for it; its seconds."""
        started = time.perf_counter()
        self.loop.run_until_complete(plan_for(self.pool, KnnQuery(K, MODEL_VERSION, None, memory_mb=memory_mb),
                                              np.ones(DIM)))
        self.loop.run_until_complete(asyncio.gather(*refreshing(self.pool)))
        return time.perf_counter() - started

    def plan(self, q: np.ndarray, brands: list[str] | None) -> SearchPlan:
        return self.loop.run_until_complete(plan_for(self.pool, KnnQuery(K, MODEL_VERSION, brands), q))

    def timed(self, q: np.ndarray, brands: list[str] | None, **options: Any) -> tuple[float, set[int]]:
        started = time.perf_counter()
        hits = self.loop.run_until_complete(knn_images(
            self.pool, q, k=K, model_version=MODEL_VERSION, brands=brands, ef_search=EF_SEARCH, **options))
        return (time.perf_counter() - started) * 1000, {h.id - 1 for h in hits}

    def close(self, loop: bool = True) -> None:
        self.loop.run_until_complete(self.pool.close())
        if loop:
            self.loop.close()


@dataclass(slots=True)
class Row:
    """One filter's line of the printed table."""

    name: str
    rows: int
    plan: str
    new: Series
    means: Series
    skus: Series
    cells: Series
    old: Series
    server: list[float]


#: The issue's anchor, timed on the same queries of the filter keeping about half the rows: the
#: naive filtered query on the global HNSW at ef_search 200 (one round trip, session setting).
#: When the target was set it measured p99 6.6 ms on this machine; its figure in each run shows
#: how fast the machine is that day.
ANCHOR_EF = 200
ANCHOR_FILTER = "~50% rows"
ANCHOR_SQL = (f"SELECT id FROM sku_image_embeddings WHERE model_version = %s AND brand = ANY(%s) "
              f"ORDER BY embedding <=> %s LIMIT {K}")
#: A memory cap that fits the bench's SKU vectors (92 MB) but not its photos (230 MB more).
MEANS_MB = 128.0
#: The ways of answering measured on every query: the SKU stage ranked in the process (the
#: default), the same with the SKU means alone (no photos held; its own pool), the SKU stage
#: ranked by the server (the previous default), photo cells over PARALLEL connections (the
#: design before), the global-index design.
WAYS: dict[str, dict[str, Any]] = {"new": {}, "means": {"memory_mb": MEANS_MB}, "skus": {"memory_mb": 0},
                                   "cells": {"use_skus": False, "parallel": PARALLEL, "memory_mb": 0},
                                   "old": {"use_cells": False, "memory_mb": 0}}


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """Measure and print; return the named figures."""
    limit_blas_threads()  # as the gateway does at start-up (sku_memory.BLAS_THREADS)
    load_before = os.getloadavg()
    catalog = generate_catalog()
    url = database_url()
    build = ensure_loaded(url, catalog)
    n_queries = 60 if quick else 200
    n_explain = 10 if quick else 30
    queries = make_queries(catalog, n_queries, seed=3)
    brand_index = {brand_name(b): b for b in range(N_BRANDS)}
    totals = {way: _series() for way in WAYS}
    server: list[float] = []
    searcher = Searcher(url)
    lean = Searcher(url, searcher.loop)  # holds the SKU means alone

    def by(way: str) -> Searcher:
        return lean if way == "means" else searcher

    table: list[Row] = []
    naive_rows: list[float] = []
    naive_recall: list[float] = []
    exact_ms: list[float] = []
    anchor = _series()
    with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url, autocommit=True) as anchor_conn:
        register_vector(conn)
        register_vector(anchor_conn)
        anchor_conn.execute(f"SET hnsw.ef_search = {ANCHOR_EF}")
        prewarm_s = prewarm(conn, catalog)
        forget_profile(conn)
        matrix_s = searcher.hold_matrix()
        means_s = lean.hold_matrix(MEANS_MB)
        for way, options in WAYS.items():  # steady state: the pool's cached counts, prepared statements
            for _ in range(3):
                by(way).timed(queries[0], None, **options)
        for name, brands in filter_sets(catalog):
            mask = None if brands is None else np.isin(catalog.brand_of_row, [brand_index[b] for b in brands])
            available = catalog.rows if mask is None else int(mask.sum())
            expected = min(K, available)
            truths = [set(exact_top(catalog, q, mask, K).tolist()) for q in queries]
            first = searcher.plan(queries[0], brands)
            row = Row(name, available, describe(first), _series(), _series(), _series(), _series(), _series(), [])
            for i, (q, truth) in enumerate(zip(queries, truths, strict=True)):
                for way, options in WAYS.items():
                    ms, got = by(way).timed(q, brands, **options)
                    getattr(row, way).add(ms, got, truth, expected)
                    totals[way].add(ms, got, truth, expected)
                if ANCHOR_FILTER in name:
                    started = time.perf_counter()
                    found = anchor_conn.execute(ANCHOR_SQL, (MODEL_VERSION, brands, q)).fetchall()
                    anchor.add((time.perf_counter() - started) * 1000, {r[0] - 1 for r in found}, truth, expected)
                if i < n_explain:
                    plan = searcher.plan(q, brands)
                    row.server.append(server_ms(conn, plan, q, brands))
                    ids = set(_naive(conn, q, brands, 40))
                    naive_rows.append(len(ids))
                    naive_recall.append(len(ids & truth) / len(truth))
            server += row.server
            table.append(row)
        for q in queries[:3]:
            started = time.perf_counter()
            conn.execute("SELECT id FROM sku_image_embeddings WHERE model_version = %s "
                         f"ORDER BY (embedding <=> %s) + 0 LIMIT {K}", (MODEL_VERSION, q)).fetchall()
            exact_ms.append((time.perf_counter() - started) * 1000)
    lean.close(loop=False)
    searcher.close()
    load_after = os.getloadavg()
    new, means, skus, cells, old = totals["new"], totals["means"], totals["skus"], totals["cells"], totals["old"]

    print(f"\npgvector: {catalog.rows} rows × {DIM}; rows loaded in {build.load_s:.1f}s, search cells "
          f"trained + assigned and SKU vectors written in {build.cells_s:.1f}s, global HNSW m16/efc64 built in "
          f"{build.hnsw_s:.1f}s ({'cached' if build.reused else 'built now'}); prewarm {prewarm_s:.1f}s; "
          f"{n_queries} queries per filter, sku_rows {SKU_ROWS}, cell_rows {CELL_ROWS}; machine load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after ({os.cpu_count()} cores)")
    print(f"(default: the SKU stage ranked in the process by the SKU means and the held photos, read in "
          f"{matrix_s:.1f}s (the SKU means alone: {means_s:.1f}s); skus: the SKU "
          f"stage ranked by the server, the previous default; photo cells: the design before, over {PARALLEL} "
          "connections; old: the global-index design — global HNSW, raised ef + over-fetch, exact fallback; "
          "srv: the default plan's statement inside the server)")
    print(f"{'filter':<26}{'rows':>7} {'plan':<17}{'p50':>7}{'p99':>7}{'srv p50':>8}{'recall':>8}{'worst':>7}"
          f"{'skus50':>8}{'skus99':>8}{'skusrec':>8}{'cells50':>8}{'cells99':>8}{'old p50':>8}{'old p99':>8}"
          f"{'old rec':>8}")
    for r in table:
        print(f"{r.name:<26}{r.rows:>7} {r.plan:<17}{_percentile(r.new.latency_ms, 50):>7.2f}"
              f"{_percentile(r.new.latency_ms, 99):>7.2f}{_percentile(r.server, 50):>8.2f}"
              f"{np.mean(r.new.recall):>8.3f}{min(r.new.recall):>7.2f}"
              f"{_percentile(r.skus.latency_ms, 50):>8.2f}{_percentile(r.skus.latency_ms, 99):>8.2f}"
              f"{np.mean(r.skus.recall):>8.3f}"
              f"{_percentile(r.cells.latency_ms, 50):>8.2f}{_percentile(r.cells.latency_ms, 99):>8.2f}"
              f"{_percentile(r.old.latency_ms, 50):>8.2f}{_percentile(r.old.latency_ms, 99):>8.2f}"
              f"{np.mean(r.old.recall):>8.3f}")
    print(f"photo cells ({PARALLEL} connections): p50 {_percentile(cells.latency_ms, 50):.2f} ms, "
          f"p99 {_percentile(cells.latency_ms, 99):.2f} ms, recall {np.mean(cells.recall):.3f}, worst filter "
          f"{min(float(np.mean(r.cells.recall)) for r in table):.3f}")
    print(f"SKU means alone in the process (no photos held): p50 {_percentile(means.latency_ms, 50):.2f} ms, "
          f"p99 {_percentile(means.latency_ms, 99):.2f} ms, recall {np.mean(means.recall):.3f}, worst filter "
          f"{min(float(np.mean(r.means.recall)) for r in table):.3f}")
    print(f"SKU stage in the server: p50 {_percentile(skus.latency_ms, 50):.2f} ms, "
          f"p99 {_percentile(skus.latency_ms, 99):.2f} ms, recall {np.mean(skus.recall):.3f}, worst filter "
          f"{min(float(np.mean(r.skus.recall)) for r in table):.3f}")
    half = next(r for r in table if ANCHOR_FILTER in r.name)
    print(f"anchor (naive filtered HNSW ef {ANCHOR_EF}, {half.name}): p50 {_percentile(anchor.latency_ms, 50):.2f} "
          f"ms, p99 {_percentile(anchor.latency_ms, 99):.2f} ms, rows {anchor.min_rows}+ of 50, recall "
          f"{np.mean(anchor.recall):.3f}; the default on the same queries: "
          f"p99 {_percentile(half.new.latency_ms, 99):.2f} ms")
    print(f"naive filtered HNSW ef 40: rows {np.mean(naive_rows):.1f}/50 on average, "
          f"recall {np.mean(naive_recall):.3f}; exact scan, all rows: {np.mean(exact_ms):.0f} ms")
    print(f"server-side (EXPLAIN ANALYZE, planning + execution) of the chosen plans: "
          f"p50 {_percentile(server, 50):.2f} ms, p99 {_percentile(server, 99):.2f} ms")
    previous = "SKU stage ranked by the server (previous default), same run"
    worst = min(table, key=lambda r: float(np.mean(r.new.recall)))
    slowest = max(table, key=lambda r: _percentile(r.new.latency_ms, 99))
    global_design = "global-index design (global HNSW, raised ef + over-fetch, exact fallback), same run"
    return {
        "pgvector_rows": {"value": catalog.rows, "unit": "rows"},
        "pgvector_build_s": {
            "value": round(build.cells_s + build.hnsw_s, 1),
            "unit": "s (search cells + SKU vectors + global HNSW)",
            "baseline": "global HNSW only", "baseline_value": round(build.hnsw_s, 1)},
        "pgvector_cells_build_s": {"value": round(build.cells_s, 1),
                                   "unit": "s (k-means on 50K + assign every row + SKU vectors)",
                                   "baseline": "global HNSW build", "baseline_value": round(build.hnsw_s, 1)},
        "pgvector_filtered_top50_p50_ms": {
            "value": round(_percentile(new.latency_ms, 50), 2), "unit": "ms", "baseline": previous,
            "baseline_value": round(_percentile(skus.latency_ms, 50), 2)},
        "pgvector_filtered_top50_p99_ms": {
            "value": round(_percentile(new.latency_ms, 99), 2), "unit": "ms", "baseline": previous,
            "baseline_value": round(_percentile(skus.latency_ms, 99), 2)},
        "pgvector_filtered_top50_p99_ms_worst_filter": {
            "value": round(_percentile(slowest.new.latency_ms, 99), 2),
            "unit": f"ms (the filter with the highest p99: {slowest.name}, over its {n_queries} queries)",
            "baseline": previous, "baseline_value": round(_percentile(slowest.skus.latency_ms, 99), 2)},
        "pgvector_filtered_top50_p99_ms_photo_cells": {
            "value": round(_percentile(cells.latency_ms, 99), 2),
            "unit": f"ms (photo cells over {PARALLEL} connections)",
            "baseline": "default, same run", "baseline_value": round(_percentile(new.latency_ms, 99), 2)},
        "pgvector_filtered_top50_p99_ms_sku_means": {
            "value": round(_percentile(means.latency_ms, 99), 2),
            "unit": "ms (the SKU means alone in the process, no photos held)",
            "baseline": "default, same run", "baseline_value": round(_percentile(new.latency_ms, 99), 2)},
        "pgvector_filtered_top50_p50_ms_sku_means": {
            "value": round(_percentile(means.latency_ms, 50), 2),
            "unit": "ms (the SKU means alone in the process, no photos held)",
            "baseline": "default, same run", "baseline_value": round(_percentile(new.latency_ms, 50), 2)},
        "pgvector_sku_memory_load_s": {
            "value": round(matrix_s, 2),
            "unit": "s (reading 47,000 SKU and 235,000 photo vectors into the process)",
            "baseline": "the SKU means alone", "baseline_value": round(means_s, 2)},
        "pgvector_filtered_top50_p99_ms_global_design": {
            "value": round(_percentile(old.latency_ms, 99), 2), "unit": "ms (global-index design)",
            "baseline": "default, same run", "baseline_value": round(_percentile(new.latency_ms, 99), 2)},
        "pgvector_filtered_top50_server_p50_ms": {
            "value": round(_percentile(server, 50), 2), "unit": "ms (EXPLAIN ANALYZE sample)",
            "baseline": "exact scan, all rows", "baseline_value": round(float(np.mean(exact_ms)), 1)},
        "pgvector_filtered_top50_server_p99_ms": {
            "value": round(_percentile(server, 99), 2), "unit": "ms (EXPLAIN ANALYZE sample)",
            "baseline": "exact scan, all rows", "baseline_value": round(float(np.mean(exact_ms)), 1)},
        "pgvector_filtered_top50_recall": {
            "value": round(float(np.mean(new.recall)), 4), "unit": "recall@50", "baseline": previous,
            "baseline_value": round(float(np.mean(skus.recall)), 4)},
        "pgvector_filtered_top50_recall_worst_filter": {
            "value": round(float(np.mean(worst.new.recall)), 4), "unit": f"recall@50 ({worst.name})",
            "baseline": previous, "baseline_value": round(float(np.mean(worst.skus.recall)), 4)},
        "pgvector_filtered_top50_recall_global_design": {
            "value": round(float(np.mean(old.recall)), 4), "unit": "recall@50 (global-index design)",
            "baseline": global_design, "baseline_value": round(float(np.mean(old.recall)), 4)},
        "pgvector_filtered_top50_min_rows": {
            "value": new.min_rows, "unit": "rows (of 50)", "baseline": "naive filtered HNSW ef 40, mean rows",
            "baseline_value": round(float(np.mean(naive_rows)), 1)},
        "pgvector_anchor_hnsw_ef200_p99_ms": {
            "value": round(_percentile(anchor.latency_ms, 99), 2),
            "unit": f"ms (the issue's anchor: naive filtered HNSW ef {ANCHOR_EF}, {half.name}; recall "
                    f"{np.mean(anchor.recall):.3f}, ≥ {anchor.min_rows} rows; 6.6 ms when the target was set)",
            "baseline": "default, same filter and queries, same run",
            "baseline_value": round(_percentile(half.new.latency_ms, 99), 2)},
        "pgvector_bench_load_avg": {"value": round(max(load_before[0], load_after[0]), 1),
                                    "unit": f"1-min load average ({os.cpu_count()} cores)"},
    }


if __name__ == "__main__":
    import sys

    result = run(quick="--quick" in sys.argv)
    for key, figure in result.items():
        print(f"{key} = {figure}")
