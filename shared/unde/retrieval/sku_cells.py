"""SKU vectors in the cells: the first stage of the mall-filtered top-k.

Why (measured in bench/pgvector.py, 235K photos × 512, pgvector 0.6.2): inside PostgreSQL a
query pays ≈ 1.2–2 µs per 2 KB vector it ranks, so ranking the 5,000 photos of the nearest
cells costs ≈ 8–12 ms whatever the index. A SKU's 5–7 photos show one garment and agree
(cosine ≈ 0.9), so the catalog has a 5× smaller summary: the mean of each SKU's photo
vectors, stored in ``sku_embeddings`` in the cell of the centroid nearest to it. A query ranks
the filter's SKUs in its nearest cells by that mean until it has covered `SKU_ROWS` of them,
keeps the best `CANDIDATES_PER_K` × k, then ranks every photo of those SKUs by its true
distance. ≈ 1,600 SKU vectors + ≈ 750 photos find the true top-50 photos as well as 5,000
photos did (recall@50 ≈ 0.995, every filter ≥ 0.98 in the bench). A gateway process that holds
the SKU and photo vectors ranks this first stage itself and hands the server ≈ 30 SKUs
(`unde.retrieval.sku_memory`).

Consistency: a SKU row records how many photo rows its mean covers (`photos`). The planner
uses the SKU stage for a brand only when the SKU rows of that brand cover exactly as many
photos as the brand has, every SKU with a valid cell (cached counts, `SkuCounts`); any other
brand is served by the photo cells (`unde.retrieval.cells`), which stay correct at every
moment. The indexer upserts the SKUs it wrote photos for in the same transaction
(`upsert_skus`), and `ensure_cells` backfills every SKU that is missing, stale or orphaned
(`ensure_skus`), so a brand is normally complete. (Two consumers writing photos of one SKU at
the same moment can each compute its mean without the other's photo; the photo count then
disagrees, the brand falls back to the photo cells, and the next drain repairs the row.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg import AsyncConnection

from unde.retrieval.cells import CellStats, as_array, nearest_cells, stats_from_rows

#: SKU vectors a query ranks in its nearest cells (bench, 235K photos of 47K SKUs: 1,200 →
#: recall@50 0.993, worst filter 0.974; 1,600 → 0.995, worst 0.983).
SKU_ROWS = 1_600
#: SKUs whose photos are ranked exactly: this many × k.
CANDIDATES_PER_K = 3
#: SKUs upserted per statement by the backfill.
SKU_BATCH = 1_000

#: SKUs and the photos they cover per (brand, cell); cell NULL = not in a cell yet.
SKU_COUNTS_SQL = ("SELECT brand, cell, count(*), sum(photos) FROM sku_embeddings "
                  "WHERE model_version = %s GROUP BY brand, cell")

#: The mean of each given SKU's photo vectors and how many photos it covers.
MEANS_SQL = """
SELECT p.brand, p.sku_id, avg(p.embedding), count(*)
FROM unnest(%(brands)s::text[], %(skus)s::text[]) AS k(brand, sku_id)
JOIN sku_image_embeddings AS p ON p.model_version = %(mv)s AND p.brand = k.brand AND p.sku_id = k.sku_id
GROUP BY p.brand, p.sku_id
"""
UPSERT_SQL = """
INSERT INTO sku_embeddings (model_version, brand, sku_id, embedding, photos, cell)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (model_version, brand, sku_id) DO UPDATE
SET embedding = EXCLUDED.embedding, photos = EXCLUDED.photos, cell = EXCLUDED.cell, updated_at = now()
"""
#: The given SKUs that no longer have a photo.
ORPHANS_SQL = """
DELETE FROM sku_embeddings AS s USING unnest(%(brands)s::text[], %(skus)s::text[]) AS k(brand, sku_id)
WHERE s.model_version = %(mv)s AND s.brand = k.brand AND s.sku_id = k.sku_id
  AND NOT EXISTS (SELECT 1 FROM sku_image_embeddings AS p
                  WHERE p.model_version = %(mv)s AND p.brand = k.brand AND p.sku_id = k.sku_id)
"""

#: SKUs whose row is missing, stale (photo count changed), outside the cells, or orphaned.
STALE_SQL = """
SELECT p.brand, p.sku_id FROM (
    SELECT brand, sku_id, count(*) AS photos FROM sku_image_embeddings
    WHERE model_version = %(mv)s GROUP BY brand, sku_id) AS p
LEFT JOIN sku_embeddings AS s ON s.model_version = %(mv)s AND s.brand = p.brand AND s.sku_id = p.sku_id
WHERE s.sku_id IS NULL OR s.photos <> p.photos OR s.cell IS NULL OR s.cell >= %(cells)s
UNION ALL
SELECT s.brand, s.sku_id FROM sku_embeddings AS s
WHERE s.model_version = %(mv)s AND NOT EXISTS (
    SELECT 1 FROM sku_image_embeddings AS p
    WHERE p.model_version = s.model_version AND p.brand = s.brand AND p.sku_id = s.sku_id)
"""


async def upsert_skus(conn: AsyncConnection[Any], model_version: str, keys: Iterable[tuple[str, str]],
                      centroids: np.ndarray | None) -> int:
    """Recompute the SKU rows of `keys` (brand, sku_id) from their photos, each in the cell of
    its nearest centroid (NULL without `centroids`), and delete those left without a photo;
    returns rows written. Runs in the caller's transaction, so photos and SKUs commit together."""
    pairs = sorted(set(keys))
    if not pairs:
        return 0
    params = {"mv": model_version, "brands": [b for b, _ in pairs], "skus": [s for _, s in pairs]}
    means = [r for r in await (await conn.execute(MEANS_SQL, params)).fetchall() if r[2] is not None]
    await conn.execute(ORPHANS_SQL, params)
    if not means:
        return 0
    vectors = np.stack([as_array(r[2]) for r in means])
    cells: list[int | None] = ([int(c) for c in nearest_cells(vectors, centroids)] if centroids is not None
                               else [None] * len(means))
    async with conn.cursor() as cur:
        await cur.executemany(UPSERT_SQL, [(model_version, brand, sku_id, vector, int(photos), cell)
                                           for (brand, sku_id, _, photos), vector, cell
                                           in zip(means, vectors, cells, strict=True)])
    return len(means)


async def ensure_skus(conn: AsyncConnection[Any], model_version: str, centroids: np.ndarray,
                      batch: int = SKU_BATCH) -> int:
    """Backfill: recompute every missing, stale or orphaned SKU row of the model version,
    `batch` SKUs per transaction (autocommit connection); returns the SKUs looked at."""
    stale = await (await conn.execute(STALE_SQL, {"mv": model_version, "cells": len(centroids)})).fetchall()
    for start in range(0, len(stale), batch):
        async with conn.transaction():
            await upsert_skus(conn, model_version, ((b, s) for b, s in stale[start:start + batch]), centroids)
    return len(stale)


def covers(covered: Mapping[str, int], brands: Iterable[str], photo_counts: Mapping[str, int]) -> bool:
    """Do SKU rows covering `covered` photos per brand cover every photo of each of `brands`?"""
    return all(covered.get(brand, 0) == photo_counts.get(brand, 0) for brand in brands)


@dataclass(frozen=True, slots=True)
class SkuCounts:
    """The SKU stage's view of a model version: SKUs per (brand, cell) with the centroids, and
    per brand the photos its SKU rows in valid cells cover."""

    cells: CellStats
    photos: Mapping[str, int] = field(default_factory=dict)
    signature: int = 0  # changes with the centroids and with any (brand, cell)'s SKUs or photos covered

    def complete(self, brands: Iterable[str], photo_counts: Mapping[str, int]) -> bool:
        """Do the SKU rows of every one of `brands` cover all of its photos?"""
        return covers(self.photos, brands, photo_counts)

    @property
    def total(self) -> int:
        """SKU rows in valid cells."""
        return sum(int(per_cell.sum()) for per_cell in self.cells.per_brand.values())

    def probe(self, q: np.ndarray, brands: Sequence[str] | None, rows: int) -> tuple[int, ...]:
        return self.cells.probe(q, brands, rows)

    def pairs(self, cells: Iterable[int], brands: Iterable[str]) -> tuple[tuple[int, str], ...]:
        """The (cell, brand) pairs of `cells` × `brands` that hold SKUs: one index descent each
        (PostgreSQL 16 descends the btree once per combination of two ``= ANY`` arrays, and most
        combinations of a mall's brands with the probed cells are empty)."""
        wanted = sorted(set(brands) & self.cells.per_brand.keys())
        columns = np.asarray(list(cells), dtype=np.int64)
        if not wanted or not columns.size:
            return ()
        held = np.stack([self.cells.per_brand[brand][columns] for brand in wanted], axis=1) > 0
        return tuple((int(columns[c]), wanted[b]) for c, b in zip(*np.nonzero(held), strict=True))


def sku_counts(centroids: np.ndarray, rows: Iterable[tuple[str, int | None, int, int]]) -> SkuCounts:
    """SkuCounts from SKU_COUNTS_SQL rows (brand, cell or None, SKUs, photos they cover)."""
    listed = list(rows)
    photos: dict[str, int] = {}
    for brand, cell, _, covered in listed:
        if cell is not None and 0 <= cell < len(centroids):
            photos[brand] = photos.get(brand, 0) + int(covered)
    signature = hash((tuple(sorted((b, -1 if c is None else int(c), int(n), int(p)) for b, c, n, p in listed)),
                      np.ascontiguousarray(centroids).tobytes()))
    return SkuCounts(stats_from_rows(centroids, ((b, c, n) for b, c, n, _ in listed)), photos, signature)
