"""Mall-filtered k-nearest catalog images on pgvector, returning the TRUE top-k.

The production query is "the k catalog photos nearest to this vector among the brands present
in the user's mall", then the best photo per SKU (`best_per_sku`). Scores are cosine
similarity, ``1 - (embedding <=> query)``.

Why not just ``WHERE brand = ANY(...) ORDER BY embedding <=> q LIMIT k``: on pgvector < 0.8
an HNSW scan yields at most ``hnsw.ef_search`` tuples and the brand filter is applied *after*
it. Brands cluster by style, so the graph neighbourhood of a query holds few rows of a given
brand: at 235K × 512 (bench/pgvector.py) the naive query returns ~26 of 50 rows at ef 40.

How this module answers: by default in two stages over the model version's IVF cells — the
filter's SKU vectors (`unde.retrieval.sku_cells`: the mean of each SKU's photos) in the cells
nearest to the query, then every photo of the best 3·k of those SKUs ranked by true distance;
never short, recall@50 ≈ 0.995 from one brand to all of them. On a pool the first stage runs
in this process once it holds the SKU and photo vectors (`unde.retrieval.sku_memory`: the SKU
means, then the held photos keep only the SKUs that can own one of the k best photos), and the
server only ranks the chosen SKUs' photos. A brand whose SKU vectors lag
behind its photos is served by the photo cells (`unde.retrieval.cells`: the filter's photos in
the nearest cells, ranked by true distance); filters keeping few rows are scanned exactly;
before a model version has cells, the global HNSW index serves (iterative scans on pgvector ≥
0.8, raised ef + over-fetch before), with an exact scan behind it. Plans:
`unde.retrieval.knn_plan`. Per-brand row counts, rows and SKUs per (brand, cell) and the
centroids are cached per pool (`unde.retrieval.knn_catalog`, refreshed in the background); a
result shorter than the cached counts promise re-reads them once, then falls back to the
exact plan.

The embedding column is stored PLAIN (migration 0004) so exact distances never fetch TOAST.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from unde.errors import BadInput
from unde.metrics import KNN_PLANS
from unde.retrieval.cells import CELL_ROWS
from unde.retrieval.knn_catalog import catalog_async, catalog_sync, expire, forget
from unde.retrieval.knn_plan import (
    COLUMNS,
    MAX_EF,
    Catalog,
    SearchPlan,
    accept,
    fallback,
    plan_search,
    search_sql,
    settings_sql,
)
from unde.retrieval.sku_cells import SKU_ROWS
from unde.retrieval.sku_memory import SKU_MEMORY_MB


@dataclass(frozen=True, slots=True)
class ImageHit:
    """One catalog photo near the query; `score` is cosine similarity (1 = identical)."""

    id: int
    brand: str
    sku_id: str
    image_url: str
    image_rank: int
    score: float
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SkuHit:
    """One SKU with its best photo's score and the photos that matched, best first."""

    brand: str
    sku_id: str
    score: float
    best_image_url: str
    metadata: Mapping[str, Any]
    hits: tuple[ImageHit, ...]


def query_vector(vector: Sequence[float] | np.ndarray, dim: int | None = None) -> np.ndarray:
    """The query as a finite float32 vector; BadInput naming `embedding` otherwise."""
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    if array.size == 0 or (dim is not None and array.size != dim):
        raise BadInput(f"embedding must have {dim} values, got {array.size}", field="embedding")
    if not np.all(np.isfinite(array)):
        raise BadInput("embedding contains NaN or infinity", field="embedding")
    return array


#: A statement's row: COLUMNS (metadata as JSON text), then distance.
Row = tuple[Any, ...]
_DISTANCE = len(COLUMNS)


def _hit(row: Row) -> ImageHit:
    identifier, brand, sku_id, image_url, image_rank, metadata, distance = row
    return ImageHit(id=identifier, brand=brand, sku_id=sku_id, image_url=image_url, image_rank=image_rank,
                    score=1.0 - float(distance), metadata=json.loads(metadata) if metadata else {})


def _params(q: np.ndarray, brands: Sequence[str] | None, plan: SearchPlan, part: int) -> dict[str, Any]:
    """The parameters a plan's statement (of one part) names (see `search_sql`), and no others."""
    params: dict[str, Any] = {"q": q}
    if plan.kind == "memory":
        params["sku_brands"] = [brand for brand, _ in plan.chosen]
        params["sku_ids"] = [sku_id for _, sku_id in plan.chosen]
    elif plan.kind == "skus" and brands is not None:
        params["pair_cells"] = [cell for cell, _ in plan.pairs]
        params["pair_brands"] = [brand for _, brand in plan.pairs]
    else:
        if brands is not None:
            params["brands"] = sorted(set(brands) - set(plan.unknown))
        if plan.in_cells:
            params["cells"] = list(plan.parts[part])
    if plan.in_cells and plan.unknown and part == 0:
        params["unknown"] = list(plan.unknown)
    return params


def _merge(results: Sequence[Sequence[Row]], limit: int) -> list[ImageHit]:
    rows = [row for part in results for row in part]
    if len(results) > 1:
        rows.sort(key=lambda r: (r[_DISTANCE], r[0]))
    return [_hit(row) for row in rows[:limit]]


@functools.lru_cache(maxsize=256)
def _statement(plan_shape: SearchPlan, model_version: str, filtered: bool, part: int) -> str:
    """The SQL text of a plan's part; cached by the plan's shape (its cells are parameters)."""
    return search_sql(plan_shape, model_version, filtered, part).as_string(None)


def _sql(plan: SearchPlan, model_version: str, filtered: bool, part: int) -> str:
    shape = replace(plan, cells=(), groups=(), pairs=(), chosen=(), unknown=("?",) if plan.unknown else (),
                    candidates=plan.candidates if plan.kind == "skus" else 0)  # a memory plan's varies
    return _statement(shape, model_version, filtered, part)


async def _statements_async(conn: AsyncConnection[Any], plan: SearchPlan, model_version: str, q: np.ndarray,
                            brands: Sequence[str] | None, parts: Sequence[int]) -> list[list[Row]]:
    """Statements of `parts` of a plan; a plan with settings runs them in one pipelined
    transaction (set_config is transaction-local), one without as plain autocommit queries
    (one round trip each, no BEGIN/COMMIT)."""
    out = []
    settings = settings_sql(plan)
    async with contextlib.AsyncExitStack() as stack:
        cur = await stack.enter_async_context(conn.cursor())
        if settings or not conn.autocommit:  # else: no BEGIN/COMMIT round trips
            await stack.enter_async_context(conn.pipeline())
            await stack.enter_async_context(conn.transaction())
            for name, value in settings:
                await cur.execute("SELECT set_config(%s, %s, true)", (name, value))
        for part in parts:
            await cur.execute(_sql(plan, model_version, brands is not None, part), _params(q, brands, plan, part))
            out.append(await cur.fetchall())
    return out


async def _run_async(owner: Any, conn: AsyncConnection[Any], plan: SearchPlan, model_version: str,
                     q: np.ndarray, brands: Sequence[str] | None) -> list[ImageHit]:
    """Run a plan; a cells plan split in parts runs each part on its own pool connection, at
    the same time (the server scans them on as many cores)."""
    n = len(plan.parts) if plan.kind == "cells" else 1
    if n == 1 or not isinstance(owner, AsyncConnectionPool):
        return _merge(await _statements_async(conn, plan, model_version, q, brands, range(n)), plan.limit)

    async def on_pool(part: int) -> list[list[Row]]:
        async with owner.connection() as other:
            return await _statements_async(other, plan, model_version, q, brands, [part])

    results = await asyncio.gather(_statements_async(conn, plan, model_version, q, brands, [0]),
                                   *(on_pool(part) for part in range(1, n)))
    return _merge([rows for result in results for rows in result], plan.limit)


def _run_sync(conn: Connection[Any], plan: SearchPlan, model_version: str, q: np.ndarray,
              brands: Sequence[str] | None) -> list[ImageHit]:
    """Blocking twin of `_run_async`: the parts run one after another on one connection."""
    out = []
    settings = settings_sql(plan)
    with contextlib.ExitStack() as stack:
        cur = stack.enter_context(conn.cursor())
        if settings or not conn.autocommit:
            stack.enter_context(conn.pipeline())
            stack.enter_context(conn.transaction())
            for name, value in settings:
                cur.execute("SELECT set_config(%s, %s, true)", (name, value))
        for part in range(len(plan.parts) if plan.kind == "cells" else 1):
            cur.execute(_sql(plan, model_version, brands is not None, part), _params(q, brands, plan, part))
            out.append(cur.fetchall())
    return _merge(out, plan.limit)


@dataclass(frozen=True, slots=True)
class KnnQuery:
    """One search's arguments, as the planner needs them."""

    k: int
    model_version: str
    brands: Sequence[str] | None
    ef_search: int = 200
    cell_rows: int = CELL_ROWS
    use_cells: bool = True
    parallel: int = 1
    sku_rows: int = SKU_ROWS
    use_skus: bool = True
    memory_mb: float = SKU_MEMORY_MB

    def plan(self, catalog: Catalog, q: np.ndarray) -> SearchPlan:
        return plan_search(self.k, catalog, self.brands, q, self.ef_search,
                           cell_rows=self.cell_rows, use_cells=self.use_cells, parallel=self.parallel,
                           sku_rows=self.sku_rows, use_skus=self.use_skus, use_memory=self.memory_mb > 0)

    def done(self, plan: SearchPlan, hits: Sequence[ImageHit], catalog: Catalog) -> bool:
        return accept(plan, len(hits), self.k, catalog.kept(self.brands))


def _start(query: KnnQuery, vector: Any) -> np.ndarray | None:
    if not 1 <= query.k <= MAX_EF:
        raise BadInput(f"k must be between 1 and {MAX_EF}", field="top_k")
    for name in ("ef_search", "cell_rows", "sku_rows"):
        if getattr(query, name) < 1:
            raise BadInput(f"{name} must be positive", field=name)
    if query.brands is not None and not query.brands:
        return None
    return query_vector(vector)


async def knn_images(conn_or_pool: AsyncConnection[Any] | AsyncConnectionPool, vector: Any, *,
                     k: int, model_version: str, brands: Sequence[str] | None,
                     ef_search: int = 200, cell_rows: int = CELL_ROWS,
                     use_cells: bool = True, parallel: int = 1, sku_rows: int = SKU_ROWS,
                     use_skus: bool = True, memory_mb: float = SKU_MEMORY_MB) -> list[ImageHit]:
    """The true top-k catalog photos nearest to `vector` among `brands` (None = all brands).

    The pool's connections need pgvector registered (`open_pool(..., vector=True)`).
    Returns min(k, rows matching the filter) hits, best first. `cell_rows`: rows of the
    filter a cells plan scans (and the largest filter scanned exactly); `ef_search`: the floor
    of the global HNSW search's ef; `use_cells=False` ignores the cells (the global-index
    design, kept as the benchmark's baseline); `parallel`: with a pool, a cells plan's scan is
    split over that many connections at once (size the pool for it); `sku_rows`: SKU vectors a
    skus plan ranks; `use_skus=False` ranks photos in the cells instead (the previous design);
    `memory_mb`: with a pool, the SKU vectors (and the photo vectors, when they fit too) are held
    and ranked in this process when they fit (`unde.retrieval.sku_memory`; 0: the server ranks
    them).
    """
    query = KnnQuery(k, model_version, brands, ef_search, cell_rows, use_cells, max(1, parallel),
                     sku_rows, use_skus, memory_mb)
    q = _start(query, vector)
    if q is None:
        return []
    if isinstance(conn_or_pool, AsyncConnectionPool):
        async with conn_or_pool.connection() as conn:
            return await _knn_async(conn_or_pool, conn, q, query)
    return await _knn_async(conn_or_pool, conn_or_pool, q, query)


async def _knn_async(owner: Any, conn: AsyncConnection[Any], q: np.ndarray,
                     query: KnnQuery) -> list[ImageHit]:
    catalog = await catalog_async(owner, conn, query.model_version, query.memory_mb)
    plan = query.plan(catalog, q)
    refreshed = False
    attempt = "first"
    while True:
        KNN_PLANS.labels(plan.kind, attempt).inc()
        attempt = "retry"
        hits = await _run_async(owner, conn, plan, query.model_version, q, query.brands)
        if query.done(plan, hits, catalog):
            return hits[:query.k]
        if plan.in_cells and not refreshed:  # stale counts or centroids: re-plan once
            refreshed = True
            expire(owner, query.model_version)
            catalog = await catalog_async(owner, conn, query.model_version, query.memory_mb)
            plan = query.plan(catalog, q)
            continue
        plan = fallback(plan, query.k)


def knn_images_sync(conn_or_pool: Connection[Any] | ConnectionPool, vector: Any, *, k: int,
                    model_version: str, brands: Sequence[str] | None, ef_search: int = 200,
                    cell_rows: int = CELL_ROWS, use_cells: bool = True, sku_rows: int = SKU_ROWS,
                    use_skus: bool = True) -> list[ImageHit]:
    """Blocking twin of `knn_images` (benchmarks, CLI); same plan, same guarantees."""
    query = KnnQuery(k, model_version, brands, ef_search, cell_rows, use_cells, 1, sku_rows, use_skus, 0)
    q = _start(query, vector)
    if q is None:
        return []
    if isinstance(conn_or_pool, ConnectionPool):
        with conn_or_pool.connection() as conn:
            return _knn_sync(conn_or_pool, conn, q, query)
    return _knn_sync(conn_or_pool, conn_or_pool, q, query)


def _knn_sync(owner: Any, conn: Connection[Any], q: np.ndarray, query: KnnQuery) -> list[ImageHit]:
    catalog = catalog_sync(owner, conn, query.model_version)
    plan = query.plan(catalog, q)
    refreshed = False
    attempt = "first"
    while True:
        KNN_PLANS.labels(plan.kind, attempt).inc()
        attempt = "retry"
        hits = _run_sync(conn, plan, query.model_version, q, query.brands)
        if query.done(plan, hits, catalog):
            return hits[:query.k]
        if plan.in_cells and not refreshed:
            refreshed = True
            expire(owner, query.model_version)
            catalog = catalog_sync(owner, conn, query.model_version)
            plan = query.plan(catalog, q)
            continue
        plan = fallback(plan, query.k)


def plan_for_sync(conn: Connection[Any], query: KnnQuery, vector: Any) -> SearchPlan:
    """The first plan `knn_images_sync(conn, ...)` would run for `query` (diagnostics, bench)."""
    return query.plan(catalog_sync(conn, conn, query.model_version), query_vector(vector))


async def plan_for(pool: AsyncConnectionPool, query: KnnQuery, vector: Any) -> SearchPlan:
    """The first plan `knn_images(pool, ...)` would run for `query` now (diagnostics, bench)."""
    async with pool.connection() as conn:
        catalog = await catalog_async(pool, conn, query.model_version, query.memory_mb)
    return query.plan(catalog, query_vector(vector))


def plan_statement(plan: SearchPlan, model_version: str, vector: Any, brands: Sequence[str] | None,
                   part: int = 0) -> tuple[str, dict[str, Any]]:
    """The SQL text and parameters of a plan's statement (of one part): what `knn_images` sends
    (diagnostics, EXPLAIN in the bench)."""
    return _sql(plan, model_version, brands is not None, part), _params(query_vector(vector), brands, plan, part)


def forget_profile(conn_or_pool: Any) -> None:
    """Drop the cached version, counts and centroids (after a bulk load, or in tests)."""
    forget(conn_or_pool)


def best_per_sku(hits: Sequence[ImageHit]) -> list[SkuHit]:
    """One entry per (brand, sku_id) with its best photo's score, best SKU first."""
    groups: dict[tuple[str, str], list[ImageHit]] = {}
    for hit in hits:
        groups.setdefault((hit.brand, hit.sku_id), []).append(hit)
    skus = []
    for (brand, sku_id), photos in groups.items():
        photos.sort(key=lambda h: (-h.score, h.image_rank))
        best = photos[0]
        skus.append(SkuHit(brand=brand, sku_id=sku_id, score=best.score,
                           best_image_url=best.image_url, metadata=best.metadata,
                           hits=tuple(photos)))
    skus.sort(key=lambda s: (-s.score, s.brand, s.sku_id))
    return skus
