"""The mall-filtered catalog search: the k SKUs nearest to a vector, best photo per SKU.

Two stages on pgvector's own indexes, one statement each, on one pool connection:
1. choose candidate SKUs by the mean of their photos (``sku_embeddings``, kept by
   `unde.retrieval.sku_vectors`): through the IVFFlat index with an iterative scan, so a brand
   filter applied during the scan never leaves the answer short (pgvector ≥ 0.8); a filter
   holding at most `SearchTuning.exact_rows` SKUs ranks its means exactly instead (a btree
   read beats probing lists for a few rows of each);
2. rank every photo of those SKUs by its true distance and keep each SKU's best photo.
A SKU's photos show one garment and agree, so the means find the SKUs that own the nearest
photos (bench/pgvector.py: recall@50 of SKUs against the exact best-photo ranking).

Query settings are transaction-local (``set_config(..., true)``), never left on a pooled
connection. Scores are cosine similarity, ``1 - (embedding <=> query)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from unde.errors import BadInput


@dataclass(frozen=True, slots=True)
class SearchTuning:
    """The knobs (gateway settings SEARCH_IVF_PROBES, SEARCH_SKU_CANDIDATES, SEARCH_EXACT_ROWS)."""

    # Defaults from bench/pgvector.py (47K SKUs of 1–7 photos, 235 lists): a SKU with many photos
    # owns a best photo nearer than its mean suggests, so the first stage keeps 5 × k SKUs; one
    # large brand is served badly by the lists nearest the query, so filters of up to ~17 % of
    # the SKUs (the largest brand) rank their means exactly, which costs about what 20 probes do.
    probes: int = 20  # IVFFlat lists probed before the iterative scan widens (recall vs latency)
    candidates: int = 250  # SKUs the first stage chooses, at least 2 × k (recall vs latency)
    exact_rows: int = 8_000  # filters with at most this many SKUs rank their means exactly

    def candidates_for(self, k: int) -> int:
        return max(self.candidates, 2 * k)


@dataclass(frozen=True, slots=True)
class SkuHit:
    """One SKU with its best photo: `score` is that photo's cosine similarity to the query."""

    brand: str
    sku_id: str
    score: float
    image_url: str
    metadata: Mapping[str, Any]


def _where(brands: Sequence[str] | None) -> sql.Composable:
    return sql.SQL("model_version = %(mv)s") + (
        sql.SQL("") if brands is None else sql.SQL(" AND brand = ANY(%(brands)s)"))


def count_sql(brands: Sequence[str] | None) -> sql.Composed:
    """The filter's SKU rows, counted up to exact_rows + 1."""
    return sql.SQL("SELECT count(*) FROM (SELECT 1 FROM sku_embeddings WHERE {} LIMIT %(cap)s) AS f"
                   ).format(_where(brands))


def search_sql(brands: Sequence[str] | None, exact: bool) -> sql.Composed:
    """Stage 1 (SKU means, `n` candidates) and stage 2 (their photos, best per SKU, `k` SKUs).

    The path is named in the text: psycopg prepares a statement it runs often, and PostgreSQL
    keeps a prepared plan across changes of the planner settings, so each path needs its own
    statement (one shared text ran the exact path on the IVFFlat plan: recall fell to 0.3)."""
    return sql.SQL("""-- {} path
WITH top AS MATERIALIZED (
    SELECT brand, sku_id FROM sku_embeddings WHERE {}
    ORDER BY embedding <=> %(q)s LIMIT %(n)s),
best AS (
    SELECT DISTINCT ON (p.brand, p.sku_id) p.id, p.embedding <=> %(q)s AS distance
    FROM top JOIN sku_image_embeddings AS p
      ON p.brand = top.brand AND p.sku_id = top.sku_id AND p.model_version = %(mv)s
    WHERE p.embedding IS NOT NULL
    ORDER BY p.brand, p.sku_id, distance)
SELECT p.brand, p.sku_id, p.image_url, p.metadata, b.distance
FROM (SELECT id, distance FROM best ORDER BY distance LIMIT %(k)s) AS b
JOIN sku_image_embeddings AS p USING (id)
ORDER BY b.distance""").format(sql.SQL("exact" if exact else "index"), _where(brands))


#: Transaction-local settings per path. The exact path turns index scans off so the planner
#: cannot walk the IVFFlat index (bitmap scans of the brand btree stay); the index path keeps
#: the planner on the IVFFlat scan rather than a sort of the whole filter.
EXACT_SETTINGS: Final = {"enable_indexscan": "off"}
INDEX_SETTINGS: Final = {"ivfflat.iterative_scan": "relaxed_order", "enable_seqscan": "off",
                         "enable_bitmapscan": "off"}


def path_settings(exact: bool, tuning: SearchTuning) -> dict[str, str]:
    return dict(EXACT_SETTINGS) if exact else {**INDEX_SETTINGS, "ivfflat.probes": str(tuning.probes)}


async def search_conn(conn: AsyncConnection[Any], vector: Sequence[float] | np.ndarray, *, model_version: str,
                      k: int, brands: Sequence[str] | None,
                      tuning: SearchTuning = SearchTuning()) -> list[SkuHit]:
    """The k nearest SKUs among `brands` (None: every brand) on an autocommit connection."""
    if k < 1:
        raise BadInput("k must be at least 1", field="top_k")
    q = np.asarray(vector, dtype=np.float32)
    params: dict[str, Any] = {"mv": model_version, "q": q, "k": k, "n": tuning.candidates_for(k),
                              "brands": None if brands is None else list(brands),
                              "cap": tuning.exact_rows + 1}
    if brands is not None and not brands:
        return []
    async with conn.transaction():
        row = await (await conn.execute(count_sql(brands), params)).fetchone()
        exact = row is not None and int(row[0]) <= tuning.exact_rows
        settings = path_settings(exact, tuning)
        await conn.execute(
            sql.SQL("SELECT {}").format(sql.SQL(", ").join(
                sql.SQL("set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value))
                for name, value in settings.items())))
        rows = await (await conn.execute(search_sql(brands, exact), params)).fetchall()
    return [SkuHit(brand, sku_id, 1.0 - float(distance), image_url, metadata or {})
            for brand, sku_id, image_url, metadata, distance in rows]


async def search(pool: AsyncConnectionPool, vector: Sequence[float] | np.ndarray, *, model_version: str,
                 k: int, brands: Sequence[str] | None, tuning: SearchTuning = SearchTuning(),
                 timeout_s: float | None = None) -> list[SkuHit]:
    """`search_conn` on one connection of `pool` (waiting at most `timeout_s` for it)."""
    async with pool.connection(timeout=timeout_s) as conn:
        return await search_conn(conn, vector, model_version=model_version, k=k, brands=brands,
                                 tuning=tuning)
