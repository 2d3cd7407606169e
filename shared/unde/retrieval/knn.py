"""Mall-filtered k-nearest catalog images on pgvector, returning the TRUE top-k.

The production query is "the k catalog photos nearest to this vector among the brands present
in the user's mall", then the best photo per SKU (`best_per_sku`). Scores are cosine
similarity, ``1 - (embedding <=> query)``.

Why not just ``WHERE brand = ANY(...) ORDER BY embedding <=> q LIMIT k``: on pgvector < 0.8
an HNSW scan yields at most ``hnsw.ef_search`` tuples and the brand filter is applied *after*
it, so a filter keeping a fraction ``s`` of the rows returns about ``ef_search × s`` rows —
silently fewer than k (measured: ef 40, half the brands → ~20 of 50 rows, recall 0.39).

What this module does (measured at 235K × 512 in ``bench/pgvector.py``):

1. Per pool (or connection) it caches the pgvector version (once) and per-brand row counts of
   each model version (refreshed every `COUNTS_TTL_S`), so it knows how many rows the filter
   keeps (``s`` = kept / rows in the HNSW index) without asking the planner.
2. Path choice by a cost model. HNSW work grows with ``ef ≈ k × OVERFETCH / s``; an exact scan
   (a bitmap scan on the brand index, distances computed for every kept row) grows with the
   kept rows. When the kept rows are at most `EXACT_MAX_ROWS` the exact scan is both correct
   and the faster one; otherwise HNSW runs with ``SET LOCAL hnsw.ef_search =
   min(MAX_EF, max(ef_search, k × OVERFETCH / s))`` in a transaction and asks for
   ``SURVIVORS × k`` filtered rows: fewer survivors mean the query sits where the filter is
   locally sparser than average (brands cluster by style), so ef is raised.
   The exact path orders by an expression (``(embedding <=> q) + 0``) the index cannot serve,
   so the planner never swaps in the lossy index scan.
3. On pgvector ≥ 0.8 the HNSW path turns on ``hnsw.iterative_scan = relaxed_order`` (the scan
   continues until k rows pass the filter) and re-sorts the k rows.
4. Whatever the path, a result shorter than k is never returned as is: HNSW is retried with
   ef 4× larger (up to `MAX_EF`), then the exact scan answers. The cached counts therefore
   steer speed only, never correctness.

Measured (bench/pgvector.py, 235K rows, 40 Zipf brands that cluster by style, street-like
queries, machine load ~6 on 2 cores): never fewer rows than exist (min 50/50 vs 16/50 for the
naive ef-40 query), recall@50 0.966 overall (0.94 unfiltered … 1.0 small brands; naive ef 40:
0.31), but p50 ~35–50 ms / p99 up to ~0.6 s, far from the 10 ms target: on pgvector 0.6 a
selective filter costs either ef ≈ 1000 or an exact scan. The way to 10 ms on 0.6 is physical:
LIST/HASH-partition `sku_image_embeddings` by brand with an HNSW index per partition (the
brand filter then prunes partitions and each partition's scan is unfiltered), or pgvector ≥ 0.8
in production, where this module already switches to iterative scans.

The embedding column is stored PLAIN (migration 0004): a 512-d vector is 2 KB, which the
default EXTERNAL storage moves to TOAST, making every exact distance a TOAST fetch (measured
50K rows: 650 ms TOASTed vs 65 ms PLAIN).
"""

from __future__ import annotations

import math
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

#: ef_search for the HNSW path is at least k × OVERFETCH / (fraction of rows the filter keeps).
OVERFETCH = 8.0
#: The HNSW path asks for k × SURVIVORS filtered rows; fewer means the filter is locally more
#: selective than on average (brands cluster by style), so the top k may be wrong: raise ef.
SURVIVORS = 2
#: pgvector caps hnsw.ef_search at 1000.
MAX_EF = 1000
#: Filters keeping at most this many rows are answered by the exact scan. Measured on pgvector
#: 0.6.2 here: an exact distance costs ~1.3–4 µs/row (unvectorised build, loaded machine), an
#: HNSW search ~17 µs per unit of ef, so with ef ≈ 3k/s the two cross near 12K kept rows.
EXACT_MAX_ROWS = 12_000
#: How long per-brand row counts are trusted (they only steer the path choice).
COUNTS_TTL_S = 300.0
#: On pgvector ≥ 0.8, how many tuples an iterative scan may visit at most.
MAX_SCAN_TUPLES = 50_000

_COLUMNS = "id, brand, sku_id, image_url, image_rank, metadata"


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


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """How one query runs: `ef` is None for the exact scan; `limit` rows are asked for."""

    ef: int | None
    iterative: bool = False
    limit: int = 0

    @property
    def exact(self) -> bool:
        return self.ef is None


@dataclass(slots=True)
class _Profile:
    """What is cached per pool/connection: pgvector version and per-brand row counts."""

    version: tuple[int, ...] | None = None
    counts: dict[str, tuple[float, dict[str, int], int]] = field(default_factory=dict)


_profiles: weakref.WeakKeyDictionary[Any, _Profile] = weakref.WeakKeyDictionary()

VERSION_SQL = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
COUNTS_SQL = (
    "SELECT brand, count(*) FROM sku_image_embeddings WHERE model_version = %s GROUP BY brand"
)
TOTAL_SQL = "SELECT count(*) FROM sku_image_embeddings"


def parse_version(text: str | None) -> tuple[int, ...]:
    """'0.6.2' → (0, 6, 2); missing extension → (0,)."""
    if not text:
        return (0,)
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def supports_iterative_scan(version: tuple[int, ...]) -> bool:
    """`hnsw.iterative_scan` exists from pgvector 0.8.0."""
    return version >= (0, 8)


def plan_search(k: int, kept_rows: int, total_rows: int, ef_search: int, iterative: bool,
                exact_max_rows: int = EXACT_MAX_ROWS) -> SearchPlan:
    """Choose exact scan or HNSW (with which ef) from how many rows the filter keeps."""
    if kept_rows <= max(exact_max_rows, k) or total_rows <= 0:
        return SearchPlan(ef=None, limit=k)
    if iterative:
        return SearchPlan(ef=max(ef_search, k), iterative=True, limit=k)
    fraction = min(1.0, kept_rows / total_rows)
    needed = math.ceil(k * OVERFETCH / fraction)
    limit = k * SURVIVORS
    return SearchPlan(ef=min(MAX_EF, max(ef_search, needed, limit)), limit=limit)


def escalate(plan: SearchPlan, k: int) -> SearchPlan:
    """The next, more thorough plan after a short HNSW result."""
    if plan.exact or plan.iterative or plan.ef is None or plan.ef >= MAX_EF:
        return SearchPlan(ef=None, limit=k)
    return SearchPlan(ef=min(MAX_EF, plan.ef * 4), limit=plan.limit)


def accept(plan: SearchPlan, rows: int, k: int) -> bool:
    """Is this result trustworthy as the top k? (else escalate)."""
    if plan.exact or plan.iterative:
        return plan.exact or rows >= k
    if plan.ef is not None and plan.ef >= MAX_EF:
        return rows >= k
    return rows >= plan.limit


def search_sql(plan: SearchPlan, filtered: bool) -> str:
    """The SELECT for a plan; parameters: q, model_version, [brands], k."""
    where = "model_version = %(model_version)s AND embedding IS NOT NULL"
    if filtered:
        where += " AND brand = ANY(%(brands)s)"
    distance = "embedding <=> %(q)s"
    order = f"({distance}) + 0" if plan.exact else distance
    inner = (f"SELECT {_COLUMNS}, {distance} AS distance FROM sku_image_embeddings "
             f"WHERE {where} ORDER BY {order} LIMIT %(k)s")
    if plan.iterative:
        return f"WITH hits AS MATERIALIZED ({inner}) SELECT * FROM hits ORDER BY distance, id"
    return inner


def settings_sql(plan: SearchPlan) -> list[tuple[str, str]]:
    """Transaction-local settings a plan needs, as (name, value) for set_config."""
    if plan.exact:
        return []
    assert plan.ef is not None
    out = [("hnsw.ef_search", str(plan.ef))]
    if plan.iterative:
        out += [("hnsw.iterative_scan", "relaxed_order"),
                ("hnsw.max_scan_tuples", str(MAX_SCAN_TUPLES))]
    return out


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


def _kept(counts: Mapping[str, int], brands: Sequence[str] | None) -> int:
    if brands is None:
        return sum(counts.values())
    return sum(counts.get(brand, 0) for brand in set(brands))


def _params(q: np.ndarray, model_version: str, brands: Sequence[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {"q": q, "model_version": model_version}
    if brands is not None:
        params["brands"] = sorted(set(brands))
    return params


def _check_args(k: int, ef_search: int) -> None:
    if not 1 <= k <= MAX_EF:
        raise BadInput(f"k must be between 1 and {MAX_EF}", field="top_k")
    if ef_search < 1:
        raise BadInput("ef_search must be positive", field="ef_search")


async def _profile_async(owner: Any, conn: AsyncConnection[Any], model_version: str
                         ) -> tuple[tuple[int, ...], dict[str, int], int]:
    profile = _profiles.setdefault(owner, _Profile())
    if profile.version is None:
        row = await (await conn.execute(VERSION_SQL)).fetchone()
        profile.version = parse_version(row[0] if row else None)
    cached = profile.counts.get(model_version)
    if cached is None or time.monotonic() - cached[0] > COUNTS_TTL_S:
        rows = await (await conn.execute(COUNTS_SQL, (model_version,))).fetchall()
        total_row = await (await conn.execute(TOTAL_SQL)).fetchone()
        cached = (time.monotonic(), {r[0]: int(r[1]) for r in rows}, int(total_row[0] if total_row else 0))
        profile.counts[model_version] = cached
    return profile.version, cached[1], cached[2]


async def _run_async(conn: AsyncConnection[Any], plan: SearchPlan, params: dict[str, Any],
                     filtered: bool) -> list[ImageHit]:
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for name, value in settings_sql(plan):
            await cur.execute("SELECT set_config(%s, %s, true)", (name, value))
        await cur.execute(search_sql(plan, filtered), {**params, "k": plan.limit})
        return [_hit(row) for row in await cur.fetchall()]


async def knn_images(conn_or_pool: AsyncConnection[Any] | AsyncConnectionPool, vector: Any, *,
                     k: int, model_version: str, brands: Sequence[str] | None,
                     ef_search: int = 200, exact_max_rows: int = EXACT_MAX_ROWS) -> list[ImageHit]:
    """The true top-k catalog photos nearest to `vector` among `brands` (None = all brands).

    The pool's connections need pgvector registered (`open_pool(..., vector=True)`).
    Returns min(k, rows matching the filter) hits, best first. `exact_max_rows`: filters
    keeping at most this many rows use the exact scan (see the module docstring).
    """
    _check_args(k, ef_search)
    if brands is not None and not brands:
        return []
    q = query_vector(vector)
    if isinstance(conn_or_pool, AsyncConnectionPool):
        async with conn_or_pool.connection() as conn:
            return await _knn_async(conn_or_pool, conn, q, k, model_version, brands, ef_search,
                                    exact_max_rows)
    return await _knn_async(conn_or_pool, conn_or_pool, q, k, model_version, brands, ef_search,
                            exact_max_rows)


async def _knn_async(owner: Any, conn: AsyncConnection[Any], q: np.ndarray, k: int,
                     model_version: str, brands: Sequence[str] | None,
                     ef_search: int, exact_max_rows: int) -> list[ImageHit]:
    version, counts, total = await _profile_async(owner, conn, model_version)
    plan = plan_search(k, _kept(counts, brands), total, ef_search,
                       supports_iterative_scan(version), exact_max_rows)
    params = _params(q, model_version, brands)
    while True:
        hits = await _run_async(conn, plan, params, brands is not None)
        if accept(plan, len(hits), k):
            return hits[:k]
        plan = escalate(plan, k)


def _profile_sync(owner: Any, conn: Connection[Any], model_version: str
                  ) -> tuple[tuple[int, ...], dict[str, int], int]:
    profile = _profiles.setdefault(owner, _Profile())
    if profile.version is None:
        row = conn.execute(VERSION_SQL).fetchone()
        profile.version = parse_version(row[0] if row else None)
    cached = profile.counts.get(model_version)
    if cached is None or time.monotonic() - cached[0] > COUNTS_TTL_S:
        rows = conn.execute(COUNTS_SQL, (model_version,)).fetchall()
        total_row = conn.execute(TOTAL_SQL).fetchone()
        cached = (time.monotonic(), {r[0]: int(r[1]) for r in rows}, int(total_row[0] if total_row else 0))
        profile.counts[model_version] = cached
    return profile.version, cached[1], cached[2]


def _run_sync(conn: Connection[Any], plan: SearchPlan, params: dict[str, Any],
              filtered: bool) -> list[ImageHit]:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for name, value in settings_sql(plan):
            cur.execute("SELECT set_config(%s, %s, true)", (name, value))
        cur.execute(search_sql(plan, filtered), {**params, "k": plan.limit})
        return [_hit(row) for row in cur.fetchall()]


def knn_images_sync(conn_or_pool: Connection[Any] | ConnectionPool, vector: Any, *, k: int,
                    model_version: str, brands: Sequence[str] | None,
                    ef_search: int = 200, exact_max_rows: int = EXACT_MAX_ROWS) -> list[ImageHit]:
    """Blocking twin of `knn_images` (benchmarks, CLI); same plan, same guarantees."""
    _check_args(k, ef_search)
    if brands is not None and not brands:
        return []
    q = query_vector(vector)
    if isinstance(conn_or_pool, ConnectionPool):
        with conn_or_pool.connection() as conn:
            return _knn_sync(conn_or_pool, conn, q, k, model_version, brands, ef_search, exact_max_rows)
    return _knn_sync(conn_or_pool, conn_or_pool, q, k, model_version, brands, ef_search,
                     exact_max_rows)


def _knn_sync(owner: Any, conn: Connection[Any], q: np.ndarray, k: int, model_version: str,
              brands: Sequence[str] | None, ef_search: int, exact_max_rows: int) -> list[ImageHit]:
    version, counts, total = _profile_sync(owner, conn, model_version)
    plan = plan_search(k, _kept(counts, brands), total, ef_search,
                       supports_iterative_scan(version), exact_max_rows)
    params = _params(q, model_version, brands)
    while True:
        hits = _run_sync(conn, plan, params, brands is not None)
        if accept(plan, len(hits), k):
            return hits[:k]
        plan = escalate(plan, k)


def forget_profile(conn_or_pool: Any) -> None:
    """Drop the cached version and counts (after a bulk load, or in tests)."""
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
