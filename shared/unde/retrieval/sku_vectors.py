"""Upkeep of ``sku_embeddings``, the first stage of `unde.retrieval.search`.

One row per SKU and model version: the mean of its photos' embeddings and how many photos it
covers. The indexer recomputes the SKUs it wrote photos for in the same transaction
(`upsert_skus`); after each drain `ensure_skus` repairs every row that is missing, stale or
orphaned (two consumers writing photos of one SKU at once can each miss the other's photo),
and `maintain_index` keeps the IVFFlat index's lists in step with the table's size.

IVFFlat trains its lists (k-means inside pgvector) when the index is built; rows inserted
later join the nearest existing list. pgvector's guidance is lists ≈ rows / 1000 up to 1M
rows; this table holds one short row per SKU and the first stage wants few rows per probe, so
lists ≈ rows / 200 (bench/pgvector.py: 47K SKUs, 235 lists, 10 probes). The index is rebuilt
with ``REINDEX INDEX CONCURRENTLY`` (searches keep using the old one meanwhile) once the
wanted lists differ from the built ones by `REBUILD_FACTOR` either way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from psycopg import AsyncConnection, sql

log = logging.getLogger(__name__)

INDEX: Final = "sku_embeddings_ivf"
ROWS_PER_LIST: Final = 200
MAX_LISTS: Final = 32_768  # pgvector's limit
REBUILD_FACTOR: Final = 2.0
#: SKUs recomputed per transaction by the backfill.
SKU_BATCH: Final = 1_000

#: Recompute the given SKUs' means from their photos (brand, sku_id arrays) and delete those
#: left without a photo.
UPSERT_SQL: Final = """
INSERT INTO sku_embeddings (model_version, brand, sku_id, embedding, photos)
SELECT p.model_version, p.brand, p.sku_id, avg(p.embedding), count(*)
FROM unnest(%(brands)s::text[], %(skus)s::text[]) AS k(brand, sku_id)
JOIN sku_image_embeddings AS p ON p.model_version = %(mv)s AND p.brand = k.brand AND p.sku_id = k.sku_id
WHERE p.embedding IS NOT NULL
GROUP BY p.model_version, p.brand, p.sku_id
ON CONFLICT (model_version, brand, sku_id) DO UPDATE
SET embedding = EXCLUDED.embedding, photos = EXCLUDED.photos, updated_at = now()
"""
ORPHANS_SQL: Final = """
DELETE FROM sku_embeddings AS s USING unnest(%(brands)s::text[], %(skus)s::text[]) AS k(brand, sku_id)
WHERE s.model_version = %(mv)s AND s.brand = k.brand AND s.sku_id = k.sku_id
  AND NOT EXISTS (SELECT 1 FROM sku_image_embeddings AS p
                  WHERE p.model_version = %(mv)s AND p.brand = k.brand AND p.sku_id = k.sku_id
                    AND p.embedding IS NOT NULL)
"""
#: SKUs whose row is missing or stale (photo count changed), and rows without a photo.
STALE_SQL: Final = """
SELECT p.brand, p.sku_id FROM (
    SELECT brand, sku_id, count(*) AS photos FROM sku_image_embeddings
    WHERE model_version = %(mv)s AND embedding IS NOT NULL GROUP BY brand, sku_id) AS p
LEFT JOIN sku_embeddings AS s ON s.model_version = %(mv)s AND s.brand = p.brand AND s.sku_id = p.sku_id
WHERE s.sku_id IS NULL OR s.photos <> p.photos
UNION ALL
SELECT s.brand, s.sku_id FROM sku_embeddings AS s
WHERE s.model_version = %(mv)s AND NOT EXISTS (
    SELECT 1 FROM sku_image_embeddings AS p
    WHERE p.model_version = s.model_version AND p.brand = s.brand AND p.sku_id = s.sku_id
      AND p.embedding IS NOT NULL)
"""
#: The index's built lists (its reloption) and the table's rows (all model versions).
INDEX_STATE_SQL: Final = """
SELECT (SELECT option_value::int FROM pg_options_to_table(c.reloptions) WHERE option_name = 'lists'),
       (SELECT count(*) FROM sku_embeddings)
FROM pg_class AS c WHERE c.relname = %s AND c.relkind = 'i'
"""
#: Leftovers of a REINDEX CONCURRENTLY that was interrupted (invalid copies named *_ccnew*).
LEFTOVERS_SQL: Final = """
SELECT c.relname FROM pg_class AS c JOIN pg_index AS i ON i.indexrelid = c.oid
WHERE NOT i.indisvalid AND starts_with(c.relname::text, %s)
"""


async def upsert_skus(conn: AsyncConnection[Any], model_version: str, keys: Iterable[tuple[str, str]]) -> int:
    """Recompute the SKU rows of `keys` (brand, sku_id) from their photos and delete those left
    without one; runs in the caller's transaction, so photos and SKUs commit together."""
    pairs = sorted(set(keys))
    if not pairs:
        return 0
    params = {"mv": model_version, "brands": [b for b, _ in pairs], "skus": [s for _, s in pairs]}
    await conn.execute(ORPHANS_SQL, params)
    cursor = await conn.execute(UPSERT_SQL, params)
    return max(cursor.rowcount, 0)


async def ensure_skus(conn: AsyncConnection[Any], model_version: str, batch: int = SKU_BATCH) -> int:
    """Backfill every missing, stale or orphaned SKU row of the model version, `batch` SKUs per
    transaction (autocommit connection); returns the SKUs recomputed."""
    stale = await (await conn.execute(STALE_SQL, {"mv": model_version})).fetchall()
    for start in range(0, len(stale), batch):
        async with conn.transaction():
            await upsert_skus(conn, model_version, ((b, s) for b, s in stale[start:start + batch]))
    return len(stale)


def wanted_lists(rows: int) -> int:
    return max(1, min(MAX_LISTS, round(rows / ROWS_PER_LIST)))


def needs_rebuild(built: int, rows: int) -> bool:
    wanted = wanted_lists(rows)
    return max(wanted, built) >= REBUILD_FACTOR * min(wanted, built)


@dataclass(frozen=True, slots=True)
class IndexReport:
    """What `maintain_index` found and did."""

    rows: int
    lists: int
    rebuilt: bool


def _alter_lists(lists: int) -> sql.Composed:
    return sql.SQL("ALTER INDEX {} SET (lists = {})").format(sql.Identifier(INDEX), sql.Literal(lists))


async def maintain_index(conn: AsyncConnection[Any]) -> IndexReport:
    """Rebuild the IVFFlat index with lists ≈ rows / 200 when the table has outgrown (or shrunk
    below) the lists it was built with. Needs an autocommit connection (REINDEX CONCURRENTLY).

    The built lists are read from the index's reloption, which is set just before the rebuild:
    a rebuild that fails puts the old value back, and one that was killed midway leaves an
    invalid copy, which is dropped here and forces the rebuild again."""
    leftovers = await (await conn.execute(LEFTOVERS_SQL, (f"{INDEX}_ccnew",))).fetchall()
    for (name,) in leftovers:
        await conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
    row = await (await conn.execute(INDEX_STATE_SQL, (INDEX,))).fetchone()
    if row is None:
        raise LookupError(f"index {INDEX} is missing: run `unde db migrate`")
    built, rows = int(row[0] or 1), int(row[1])
    if not leftovers and not needs_rebuild(built, rows):
        return IndexReport(rows, built, rebuilt=False)
    lists = wanted_lists(rows)
    # The new lists take effect at the rebuild; until then the old index answers (its metapage
    # holds the lists it was built with).
    await conn.execute(_alter_lists(lists))
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute(sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(sql.Identifier(INDEX)))
    except BaseException:
        await conn.execute(_alter_lists(built))  # the index still has the lists it was built with
        raise
    finally:
        await conn.execute("RESET maintenance_work_mem")  # never left on a pooled connection
    log.info("rebuilt %s for %d SKU rows: %d → %d lists", INDEX, rows, built, lists)
    return IndexReport(rows, lists, rebuilt=True)
