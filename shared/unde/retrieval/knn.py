"""Mall-filtered k-nearest catalog images on pgvector, returning the TRUE top-k.

The production query is "the k catalog photos nearest to this vector among the brands present
in the user's mall", then the best photo per SKU (`best_per_sku`). Scores are cosine
similarity, ``1 - (embedding <=> query)``.

Why not just ``WHERE brand = ANY(...) ORDER BY embedding <=> q LIMIT k``: on pgvector < 0.8
an HNSW scan yields at most ``hnsw.ef_search`` tuples and the brand filter is applied *after*
it. Brands cluster by style, so the graph neighbourhood of a query holds few rows of a given
brand: at 235K × 512 (bench/pgvector.py) a single large brand gets recall 0.27 and sometimes
0 rows even at ef 1000.

How this module answers (plans, chosen per query from cached per-brand row counts):

* ``union`` — one partial HNSW index per (brand, model_version)
  (`unde.retrieval.brand_index`, created by the indexer) holds only that brand's photos, so a
  search in it needs no filter and returns full k rows. The mall query is a UNION ALL of one
  ``ORDER BY embedding <=> q LIMIT k`` per brand, brand and model version inlined as SQL
  literals (a parameter would not prove the partial index's predicate), merged by an outer
  ORDER BY distance LIMIT k. Each brand gets a share of an ef budget by its rows (a query far
  from all of a large brand's photos has its top-k spread over many style clusters and needs
  a large ef; a small brand's graph is walked whole at a small one); brands are grouped into
  ef tiers, one statement per tier, all in one pipelined transaction. Brands of at most
  `exact_max_rows` rows, brands without a valid index yet and brands unknown to the cached
  counts are scanned exactly in one more subquery (bitmap scan on the brand index), so a
  missing index costs speed, never correctness. A large brand split into shard indexes
  (`brand_index.ensure_brand_shards`) is searched in each shard (small graphs: high recall at
  a modest ef) instead of its one large graph. Every indexed subquery must return
  min(k, brand rows); an aggregate reports it, and a shortfall (counts gone stale, an index
  dropped) re-plans with fresh counts, then falls back to exact scans.
* ``global`` — the one global HNSW index with the filter applied after it, ef raised to
  ``k × OVERFETCH / kept share`` and ``SURVIVORS × k`` rows asked for; used when it is cheaper
  than the union (many brands, most rows kept, or no filter). A short result escalates ef,
  then goes to the union/exact plan. On pgvector ≥ 0.8 it uses iterative scans
  (``hnsw.iterative_scan = relaxed_order``) instead of over-fetching.
* ``exact`` — every kept row is scanned (ordering by ``(embedding <=> q) + 0`` so the planner
  cannot swap in a lossy index scan): tiny filters, and the last resort.

The choice is a cost model in microseconds (`unde.retrieval.knn_plan.PlanCosts`, measured in
bench/pgvector.py). The embedding column is stored PLAIN (migration 0004) so exact distances
never fetch TOAST. The global index stays: it serves no-mall queries and malls keeping most
brands far cheaper than a union of dozens of brand searches (bench/pgvector.py).
"""
from __future__ import annotations

import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg import AsyncConnection, Connection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from unde.errors import BadInput
from unde.retrieval.brand_index import valid_brand_indexes, valid_brand_indexes_async
from unde.retrieval.knn_plan import (
    COUNTS_SQL,
    EXACT_MAX_ROWS,
    GLOBAL_INDEX,
    GLOBAL_SQL,
    MAX_EF,
    TOTAL_SQL,
    UNION_EF_BUDGET,
    VERSION_SQL,
    Catalog,
    SearchPlan,
    accept,
    build_catalog,
    fallback,
    parse_version,
    plan_search,
    statements,
)

#: How long per-brand row counts and the list of valid brand indexes are trusted.
COUNTS_TTL_S = 300.0


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


@dataclass(slots=True)
class _Profile:
    version: tuple[int, ...] | None = None
    catalogs: dict[str, tuple[float, Catalog]] = field(default_factory=dict)


_profiles: weakref.WeakKeyDictionary[Any, _Profile] = weakref.WeakKeyDictionary()


def query_vector(vector: Sequence[float] | np.ndarray, dim: int | None = None) -> np.ndarray:
    """The query as a finite float32 vector; BadInput naming `embedding` otherwise."""
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    if array.size == 0 or (dim is not None and array.size != dim):
        raise BadInput(f"embedding must have {dim} values, got {array.size}", field="embedding")
    if not np.all(np.isfinite(array)):
        raise BadInput("embedding contains NaN or infinity", field="embedding")
    return array


def _hit(row: Mapping[str, Any]) -> ImageHit:
    return ImageHit(id=row["id"], brand=row["brand"], sku_id=row["sku_id"],
                    image_url=row["image_url"], image_rank=row["image_rank"],
                    score=1.0 - float(row["distance"]), metadata=row["metadata"] or {})


def _check_args(k: int, ef_search: int) -> None:
    if not 1 <= k <= MAX_EF:
        raise BadInput(f"k must be between 1 and {MAX_EF}", field="top_k")
    if ef_search < 1:
        raise BadInput("ef_search must be positive", field="ef_search")


def _cached(owner: Any, model_version: str) -> tuple[_Profile, Catalog | None]:
    profile = _profiles.setdefault(owner, _Profile())
    entry = profile.catalogs.get(model_version)
    if entry is None or time.monotonic() - entry[0] > COUNTS_TTL_S:
        return profile, None
    return profile, entry[1]


async def _catalog_async(owner: Any, conn: AsyncConnection[Any], model_version: str) -> Catalog:
    profile, catalog = _cached(owner, model_version)
    if catalog is not None:
        return catalog
    if profile.version is None:
        row = await (await conn.execute(VERSION_SQL)).fetchone()
        profile.version = parse_version(row[0] if row else None)
    counts = {r[0]: int(r[1]) for r in await (await conn.execute(COUNTS_SQL, (model_version,))).fetchall()}
    total = await (await conn.execute(TOTAL_SQL)).fetchone()
    global_index = await (await conn.execute(GLOBAL_SQL, (GLOBAL_INDEX,))).fetchone()
    catalog = build_catalog(profile.version, model_version, counts, int(total[0]) if total else 0,
                       await valid_brand_indexes_async(conn), bool(global_index and global_index[0]))
    profile.catalogs[model_version] = (time.monotonic(), catalog)
    return catalog


def _catalog_sync(owner: Any, conn: Connection[Any], model_version: str) -> Catalog:
    profile, catalog = _cached(owner, model_version)
    if catalog is not None:
        return catalog
    if profile.version is None:
        row = conn.execute(VERSION_SQL).fetchone()
        profile.version = parse_version(row[0] if row else None)
    counts = {r[0]: int(r[1]) for r in conn.execute(COUNTS_SQL, (model_version,)).fetchall()}
    total = conn.execute(TOTAL_SQL).fetchone()
    global_index = conn.execute(GLOBAL_SQL, (GLOBAL_INDEX,)).fetchone()
    catalog = build_catalog(profile.version, model_version, counts, int(total[0]) if total else 0,
                       valid_brand_indexes(conn), bool(global_index and global_index[0]))
    profile.catalogs[model_version] = (time.monotonic(), catalog)
    return catalog


def _params(q: np.ndarray, brands: Sequence[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {"q": q}
    if brands is not None:
        params["brands"] = sorted(set(brands))
    return params


def _merge(results: Sequence[Sequence[Mapping[str, Any]]], k: int) -> list[ImageHit]:
    if len(results) == 1:
        return [_hit(row) for row in results[0]]
    rows = sorted((row for rows in results for row in rows), key=lambda r: (r["distance"], r["id"]))
    return [_hit(row) for row in rows[:k]]


def _complete(rows: Sequence[Mapping[str, Any]], indexed_parts: int) -> bool:
    if not rows:  # nothing came back: fine only if no indexed brand was asked
        return indexed_parts == 0
    return bool(rows[0]["complete"])


async def _run_async(conn: AsyncConnection[Any], plan: SearchPlan, model_version: str,
                     params: dict[str, Any]) -> tuple[list[ImageHit], bool]:
    """All statements of a plan in one transaction, pipelined (one round trip)."""
    results, complete = [], True
    async with conn.pipeline(), conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for settings, statement, indexed_parts in statements(plan, model_version, "brands" in params):
            for name, value in settings:
                await cur.execute("SELECT set_config(%s, %s, true)", (name, value))
            await cur.execute(statement, params)
            rows = await cur.fetchall()
            complete = complete and _complete(rows, indexed_parts)
            results.append(rows)
    return _merge(results, plan.limit), complete


def _run_sync(conn: Connection[Any], plan: SearchPlan, model_version: str,
              params: dict[str, Any]) -> tuple[list[ImageHit], bool]:
    results, complete = [], True
    with conn.pipeline(), conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for settings, statement, indexed_parts in statements(plan, model_version, "brands" in params):
            for name, value in settings:
                cur.execute("SELECT set_config(%s, %s, true)", (name, value))
            cur.execute(statement, params)
            rows = cur.fetchall()
            complete = complete and _complete(rows, indexed_parts)
            results.append(rows)
    return _merge(results, plan.limit), complete


@dataclass(frozen=True, slots=True)
class KnnQuery:
    """One search's arguments, as the planner needs them."""

    k: int
    model_version: str
    brands: Sequence[str] | None
    ef_search: int = 200
    exact_max_rows: int = EXACT_MAX_ROWS
    use_brand_indexes: bool = True
    ef_budget: int = UNION_EF_BUDGET
    use_shards: bool = True

    def plan(self, catalog: Catalog, use_brand_indexes: bool = True) -> SearchPlan:
        return plan_search(self.k, catalog, self.brands, self.ef_search,
                           exact_max_rows=self.exact_max_rows, ef_budget=self.ef_budget,
                           use_brand_indexes=self.use_brand_indexes and use_brand_indexes,
                           use_shards=self.use_shards)

    def fallback(self, plan: SearchPlan, catalog: Catalog, refreshed: bool) -> SearchPlan:
        return fallback(plan, self.k, catalog, self.brands, self.ef_search,
                        self.use_brand_indexes and not refreshed, self.ef_budget, self.use_shards)


def _start(k: int, ef_search: int, brands: Sequence[str] | None, vector: Any) -> np.ndarray | None:
    _check_args(k, ef_search)
    if brands is not None and not brands:
        return None
    return query_vector(vector)


async def knn_images(conn_or_pool: AsyncConnection[Any] | AsyncConnectionPool, vector: Any, *,
                     k: int, model_version: str, brands: Sequence[str] | None,
                     ef_search: int = 200, exact_max_rows: int = EXACT_MAX_ROWS,
                     use_brand_indexes: bool = True,
                     ef_budget: int = UNION_EF_BUDGET, use_shards: bool = True) -> list[ImageHit]:
    """The true top-k catalog photos nearest to `vector` among `brands` (None = all brands).

    The pool's connections need pgvector registered (`open_pool(..., vector=True)`).
    Returns min(k, rows matching the filter) hits, best first. `ef_search`: the floor of
    the global HNSW search's ef (and no brand's ef is capped below it); `ef_budget`: the ef a
    union plan shares among its brands (see `unde.retrieval.knn_plan.union_plan`); brands
    (and whole filters) of at most
    `exact_max_rows` rows are scanned exactly; `use_brand_indexes=False` ignores the
    per-brand indexes (the previous design, kept as the benchmark's baseline);
    `use_shards=False` ignores the shard indexes of large brands (searches their one index).
    """
    q = _start(k, ef_search, brands, vector)
    if q is None:
        return []
    query = KnnQuery(k, model_version, brands, ef_search, exact_max_rows, use_brand_indexes, ef_budget,
                     use_shards)
    if isinstance(conn_or_pool, AsyncConnectionPool):
        async with conn_or_pool.connection() as conn:
            return await _knn_async(conn_or_pool, conn, q, query)
    return await _knn_async(conn_or_pool, conn_or_pool, q, query)


async def _knn_async(owner: Any, conn: AsyncConnection[Any], q: np.ndarray,
                     query: KnnQuery) -> list[ImageHit]:
    catalog = await _catalog_async(owner, conn, query.model_version)
    plan = query.plan(catalog)
    params = _params(q, query.brands)
    refreshed = False
    while True:
        hits, complete = await _run_async(conn, plan, query.model_version, params)
        if accept(plan, len(hits), complete, query.k):
            return hits[:query.k]
        if plan.kind == "union" and not refreshed:  # stale counts or index list: re-plan
            refreshed = True
            forget_profile(owner)
            catalog = await _catalog_async(owner, conn, query.model_version)
            plan = query.plan(catalog)
            continue
        plan = query.fallback(plan, catalog, refreshed)


def knn_images_sync(conn_or_pool: Connection[Any] | ConnectionPool, vector: Any, *, k: int,
                    model_version: str, brands: Sequence[str] | None, ef_search: int = 200,
                    exact_max_rows: int = EXACT_MAX_ROWS, use_brand_indexes: bool = True,
                    ef_budget: int = UNION_EF_BUDGET, use_shards: bool = True) -> list[ImageHit]:
    """Blocking twin of `knn_images` (benchmarks, CLI); same plan, same guarantees."""
    q = _start(k, ef_search, brands, vector)
    if q is None:
        return []
    query = KnnQuery(k, model_version, brands, ef_search, exact_max_rows, use_brand_indexes, ef_budget,
                     use_shards)
    if isinstance(conn_or_pool, ConnectionPool):
        with conn_or_pool.connection() as conn:
            return _knn_sync(conn_or_pool, conn, q, query)
    return _knn_sync(conn_or_pool, conn_or_pool, q, query)


def _knn_sync(owner: Any, conn: Connection[Any], q: np.ndarray, query: KnnQuery) -> list[ImageHit]:
    catalog = _catalog_sync(owner, conn, query.model_version)
    plan = query.plan(catalog)
    params = _params(q, query.brands)
    refreshed = False
    while True:
        hits, complete = _run_sync(conn, plan, query.model_version, params)
        if accept(plan, len(hits), complete, query.k):
            return hits[:query.k]
        if plan.kind == "union" and not refreshed:
            refreshed = True
            forget_profile(owner)
            catalog = _catalog_sync(owner, conn, query.model_version)
            plan = query.plan(catalog)
            continue
        plan = query.fallback(plan, catalog, refreshed)


def plan_for_sync(conn: Connection[Any], query: KnnQuery) -> SearchPlan:
    """The first plan `knn_images_sync(conn, ...)` would run for `query` (diagnostics, bench)."""
    return query.plan(_catalog_sync(conn, conn, query.model_version))


def forget_profile(conn_or_pool: Any) -> None:
    """Drop the cached version, counts and index list (after a bulk load, or in tests)."""
    _profiles.pop(conn_or_pool, None)


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
