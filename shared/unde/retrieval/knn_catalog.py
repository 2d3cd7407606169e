"""What the kNN planner knows about a model version, cached per pool (or connection).

A `Catalog` (pgvector version, photos per brand, cells and SKU vectors per cell, the global
index's state) costs ≈ 50–150 ms to read at 235K photos, so it is cached for `COUNTS_TTL_S`.
On an async pool the cache is refreshed in the background once it expires: the request that
finds it stale is answered from it while one task reads the new counts on another pool
connection (stale-while-revalidate), so no search waits for a refresh. A cache older than
`STALE_LIMIT_S` is never served (an idle pod reloads inline). Results stay correct with stale
counts: a result shorter than the counts promise re-reads them (`expire`) and re-plans.

On a pool the model version's SKU and photo vectors are also held in memory
(`unde.retrieval.sku_memory`) when they fit in the `memory_mb` the caller allows (the SKU
vectors alone when only they fit): read by a background task whenever the counts bring a new
SKU signature (or the matrix grew old), and served only while they match it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool

from unde.metrics import MEMORY_PHOTOS, MEMORY_SKUS
from unde.retrieval.cells import CELL_COUNTS_SQL, CENTROIDS_SQL, CellStats, as_array, stats_from_rows
from unde.retrieval.knn_plan import GLOBAL_INDEX, GLOBAL_SQL, INDEX_ROWS_SQL, VERSION_SQL, Catalog, parse_version
from unde.retrieval.sku_cells import SKU_COUNTS_SQL, SkuCounts, sku_counts
from unde.retrieval.sku_memory import MATRIX_MAX_AGE_S, CatalogMoved, SkuMatrix, load_matrix, matrix_bytes

log = logging.getLogger(__name__)

#: How long per-brand row counts, cell counts and centroids are trusted.
COUNTS_TTL_S = 300.0
#: How old a cache may be and still answer while a background refresh runs.
STALE_LIMIT_S = 4 * COUNTS_TTL_S


@dataclass(slots=True)
class _Profile:
    version: tuple[int, ...] | None = None
    catalogs: dict[str, tuple[float, Catalog]] = field(default_factory=dict)
    refreshing: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    matrices: dict[str, SkuMatrix] = field(default_factory=dict)
    loading: dict[str, asyncio.Task[None]] = field(default_factory=dict)


_profiles: weakref.WeakKeyDictionary[Any, _Profile] = weakref.WeakKeyDictionary()


def forget(owner: Any) -> None:
    """Drop the cached version, counts, centroids and SKU matrices of `owner` (a pool or a
    connection)."""
    _profiles.pop(owner, None)


def expire(owner: Any, model_version: str) -> None:
    """Make the next search re-read the model version's counts (the SKU matrix is kept: the
    new counts decide whether it still serves)."""
    profile = _profiles.get(owner)
    if profile is not None:
        profile.catalogs.pop(model_version, None)


def _make(profile: _Profile, model_version: str, counts_rows: list[tuple[Any, ...]], index_rows: int,
          global_index: bool, centroid_rows: list[tuple[Any, ...]], sku_rows: list[tuple[Any, ...]]) -> Catalog:
    counts: dict[str, int] = {}
    for brand, _, count in counts_rows:
        counts[brand] = counts.get(brand, 0) + int(count)
    cells: CellStats | None = None
    skus: SkuCounts | None = None
    if centroid_rows and [r[0] for r in centroid_rows] == list(range(len(centroid_rows))):
        centroids = np.stack([as_array(r[1]) for r in centroid_rows])
        cells = stats_from_rows(centroids, ((b, c, n) for b, c, n in counts_rows))
        skus = sku_counts(centroids, ((b, c, n, int(p)) for b, c, n, p in sku_rows))
    catalog = Catalog(profile.version or (0,), counts, index_rows, global_index, cells, skus,
                      profile.matrices.get(model_version))
    profile.catalogs[model_version] = (time.monotonic(), catalog)
    return catalog


async def _load_async(profile: _Profile, conn: AsyncConnection[Any], model_version: str) -> Catalog:
    if profile.version is None:
        row = await (await conn.execute(VERSION_SQL)).fetchone()
        profile.version = parse_version(row[0] if row else None)
    counts = await (await conn.execute(CELL_COUNTS_SQL, (model_version,))).fetchall()
    total = await (await conn.execute(INDEX_ROWS_SQL)).fetchone()
    global_index = await (await conn.execute(GLOBAL_SQL, (GLOBAL_INDEX,))).fetchone()
    centroids = await (await conn.execute(CENTROIDS_SQL, (model_version,))).fetchall()
    skus = await (await conn.execute(SKU_COUNTS_SQL, (model_version,))).fetchall()
    return _make(profile, model_version, counts, int(total[0]) if total else 0,
                 bool(global_index and global_index[0]), centroids, skus)


def _load_sync(profile: _Profile, conn: Connection[Any], model_version: str) -> Catalog:
    if profile.version is None:
        row = conn.execute(VERSION_SQL).fetchone()
        profile.version = parse_version(row[0] if row else None)
    counts = conn.execute(CELL_COUNTS_SQL, (model_version,)).fetchall()
    total = conn.execute(INDEX_ROWS_SQL).fetchone()
    global_index = conn.execute(GLOBAL_SQL, (GLOBAL_INDEX,)).fetchone()
    centroids = conn.execute(CENTROIDS_SQL, (model_version,)).fetchall()
    skus = conn.execute(SKU_COUNTS_SQL, (model_version,)).fetchall()
    return _make(profile, model_version, counts, int(total[0]) if total else 0,
                 bool(global_index and global_index[0]), centroids, skus)


async def _refresh(owner: AsyncConnectionPool, profile: _Profile, model_version: str, memory_mb: float) -> None:
    try:
        async with owner.connection() as conn:
            catalog = await _load_async(profile, conn, model_version)
        _keep_matrix(owner, profile, model_version, catalog, memory_mb)
    except Exception:  # the stale counts keep serving; the next request retries
        log.warning("refreshing the kNN counts of %s failed", model_version, exc_info=True)
    finally:
        profile.refreshing.pop(model_version, None)


async def _load_matrix(owner: AsyncConnectionPool, profile: _Profile, model_version: str,
                       skus: SkuCounts, photos: int, keep_photos: bool) -> None:
    started = time.perf_counter()
    try:
        async with owner.connection() as conn:
            matrix = await load_matrix(conn, model_version, len(skus.cells.centroids),
                                       skus.cells.centroids.shape[1], skus.signature, skus.total,
                                       photos, keep_photos)
        profile.matrices[model_version] = matrix
        entry = profile.catalogs.get(model_version)
        if entry is not None:  # searches see it at once (memory_ready checks the signature)
            profile.catalogs[model_version] = (entry[0], replace(entry[1], memory=matrix))
        skus_held, photos_held = _report(model_version, matrix)
        log.info("holding %d SKU and %d photo vectors of %s in memory (%.0f MB), read in %.2f s",
                 skus_held, photos_held, model_version, matrix.nbytes / 2**20, time.perf_counter() - started)
    except CatalogMoved as moved:  # the next count refresh brings the new counts and retries
        log.info("reading the SKU vectors of %s into memory stopped: %s", model_version, moved)
    except Exception:  # searches keep the server-side SKU stage; the next count refresh retries
        log.warning("reading the SKU vectors of %s into memory failed", model_version, exc_info=True)
    finally:
        profile.loading.pop(model_version, None)


def _report(model_version: str, matrix: SkuMatrix | None) -> tuple[int, int]:
    """Set the memory gauges for the matrix now held (None: none); its (SKUs, photos)."""
    skus = len(matrix.vectors) if matrix is not None else 0
    photos = len(matrix.photo_vectors) if matrix is not None and matrix.photo_vectors is not None else 0
    MEMORY_SKUS.labels(model_version).set(skus)
    MEMORY_PHOTOS.labels(model_version).set(photos)
    return skus, photos


def _keep_matrix(owner: AsyncConnectionPool, profile: _Profile, model_version: str, catalog: Catalog,
                 memory_mb: float) -> None:
    """Start reading the SKU matrix when the catalog's SKU counts are newer than the one held
    (or it is old) and it fits in `memory_mb` (with the photo vectors when they fit too); drop
    the one held when it no longer fits."""
    skus = catalog.skus
    if memory_mb <= 0 or skus is None or model_version in profile.loading:
        return
    held = profile.matrices.get(model_version)
    if held is not None and held.signature == skus.signature and time.monotonic() - held.loaded_at < MATRIX_MAX_AGE_S:
        return
    # every photo of the model version: what the matrix can hold at most (SKU rows whose photo
    # count lags, which the next drain repairs, must not make the read fail)
    rows, photos, dim = skus.total, sum(catalog.counts.values()), skus.cells.centroids.shape[1]
    if matrix_bytes(rows, dim) > memory_mb * 2**20:
        if profile.matrices.pop(model_version, None) is not None:
            _report(model_version, None)
        log.info("%d SKU vectors of %s exceed the %.1f MB allowed in memory: the server ranks them",
                 rows, model_version, memory_mb)
        return
    keep_photos = matrix_bytes(rows, dim, photos) <= memory_mb * 2**20
    if not keep_photos:
        log.info("%d photo vectors of %s exceed the %.1f MB allowed in memory: only the SKU vectors are held",
                 photos, model_version, memory_mb)
    profile.loading[model_version] = asyncio.create_task(
        _load_matrix(owner, profile, model_version, skus, photos, keep_photos))


async def catalog_async(owner: Any, conn: AsyncConnection[Any], model_version: str, memory_mb: float = 0) -> Catalog:
    """The cached catalog of `model_version` (read on `conn` when missing or too old). On a
    pool, `memory_mb` > 0 lets the model version's SKU (and photo) vectors be held in memory."""
    profile = _profiles.setdefault(owner, _Profile())
    entry = profile.catalogs.get(model_version)
    if entry is not None:
        stamp, catalog = entry
        age = time.monotonic() - stamp
        if age <= COUNTS_TTL_S:
            return catalog
        if age <= STALE_LIMIT_S and isinstance(owner, AsyncConnectionPool):
            if model_version not in profile.refreshing:
                profile.refreshing[model_version] = asyncio.create_task(
                    _refresh(owner, profile, model_version, memory_mb))
            return catalog
    catalog = await _load_async(profile, conn, model_version)
    if isinstance(owner, AsyncConnectionPool):
        _keep_matrix(owner, profile, model_version, catalog, memory_mb)
    return catalog


def catalog_sync(owner: Any, conn: Connection[Any], model_version: str) -> Catalog:
    """Blocking twin of `catalog_async` (no background refresh: an expired cache reloads)."""
    profile = _profiles.setdefault(owner, _Profile())
    entry = profile.catalogs.get(model_version)
    if entry is not None and time.monotonic() - entry[0] <= COUNTS_TTL_S:
        return entry[1]
    return _load_sync(profile, conn, model_version)


def refreshing(owner: Any) -> list[asyncio.Task[None]]:
    """Background count refreshes and SKU matrix reads running for `owner` (tests, shutdown)."""
    profile = _profiles.get(owner)
    return [*profile.refreshing.values(), *profile.loading.values()] if profile else []
