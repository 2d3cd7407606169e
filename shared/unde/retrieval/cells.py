"""IVF cells: the catalog's photos grouped around centroids, so a filtered top-k scans few rows.

Why (measured in bench/pgvector.py, 235K × 512, pgvector 0.6.2): a filtered HNSW scan on 0.6
applies the filter after the graph walk (short results), per-brand partial HNSW indexes cost
≈ 1–2 ms per index searched and a union of them grows with the mall's brands, and on CLIP-like
data (dense near-ties among same-style items) the global graph tops out at recall@50 ≈ 0.94.
Cells avoid all three: every photo belongs to the cell of its nearest centroid (spherical
k-means per model version), and a query scans **exactly** the filter's rows in the cells
nearest to it, in order, until it has covered `CELL_ROWS` of them. The brand filter is an
index condition (``(model_version, cell, brand)``), so a mall keeping 5 % of the brands costs
no more than one keeping all of them, and the result is never short: every row the filter
has in those cells is ranked by its true distance.

Lifecycle: the indexer calls `ensure_cells` when its queue drains (and `unde index` at the
end). Once a model version has `MIN_TRAIN_ROWS` photos it trains `cell_count(rows)` centroids
on a sample, stores them in ``embedding_cells`` and assigns every unassigned row; from then on
the indexer writes each new row with its cell (`nearest_cells`). Rows without a cell (written
before training, or while another process trained) are always scanned too, so results stay
correct at every moment. The model version's SKU vectors (`unde.retrieval.sku_cells`) are
placed in the same cells and brought up to date at the end of every call. Retraining (after
the catalog's look has drifted far): delete the model version's ``embedding_cells`` rows and
set its rows' ``cell`` to NULL; the next drain trains again (and re-places the SKU vectors),
and queries meanwhile use the global index or exact scans.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection

#: Filtered rows a query scans (in its nearest cells). Measured at 235K rows: 4,000 → recall@50
#: 0.989 (worst filter 0.94), 6,000 → 0.998 (worst 0.990); see bench/pgvector.py.
CELL_ROWS = 5_000
#: A model version gets cells once it has this many photos (below, exact scans are as cheap).
MIN_TRAIN_ROWS = 10_000
#: Photos sampled to train the centroids, and k-means iterations.
TRAIN_SAMPLE = 50_000
KMEANS_ITERATIONS = 12
#: Rows assigned per UPDATE statement.
ASSIGN_BATCH = 2_000
_LOCK_CLASS = 0x63656C6C  # "cell": first key of the advisory lock; the second hashes the model version

CENTROIDS_SQL = "SELECT cell, centroid FROM embedding_cells WHERE model_version = %s ORDER BY cell"
#: Rows per (brand, cell) of a model version; cell NULL = unassigned. An index-only scan of
#: the cell index (≈ 50 ms at 235K rows; with an embedding IS NOT NULL test it reads the heap,
#: ≈ 300 ms). The indexer never writes a row without its embedding.
CELL_COUNTS_SQL = ("SELECT brand, cell, count(*) FROM sku_image_embeddings "
                   "WHERE model_version = %s GROUP BY brand, cell")


def as_array(value: Any) -> np.ndarray:
    """A pgvector value as float32 numpy (the adapters return numpy or `pgvector.Vector`)."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def cell_count(rows: int) -> int:
    """Cells for a model version of `rows` photos: the power of two nearest √rows, 16…4096."""
    target = math.sqrt(max(rows, 1))
    return int(min(4096, max(16, 2 ** round(math.log2(target)))))


def _normalised(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def nearest_cells(vectors: np.ndarray, centroids: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Index of the nearest centroid (cosine) of every vector."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != centroids.shape[1]:
        raise ValueError(f"vectors of shape {vectors.shape} for {centroids.shape[1]}-d centroids")
    out = np.empty(len(vectors), dtype=np.int32)
    for start in range(0, len(vectors), chunk):
        out[start:start + chunk] = np.argmax(_normalised(vectors[start:start + chunk]) @ centroids.T, axis=1)
    return out


def train_centroids(vectors: np.ndarray, n: int, *, iterations: int = KMEANS_ITERATIONS,
                    seed: int = 0) -> np.ndarray:
    """Spherical k-means: `n` unit centroids (n ≤ len(vectors)); an emptied cell is re-seeded
    with the vector farthest from its centroid, so every cell stays in use."""
    x = _normalised(np.asarray(vectors, dtype=np.float32))
    if not 1 <= n <= len(x):
        raise ValueError(f"cannot train {n} cells on {len(x)} vectors")
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(len(x), n, replace=False)].copy()
    for _ in range(iterations):
        sims = x @ centroids.T
        labels = np.argmax(sims, axis=1)
        best = sims[np.arange(len(x)), labels]
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, x)
        sizes = np.bincount(labels, minlength=n)
        for cell in np.flatnonzero(sizes == 0):  # farthest vectors become the empty cells
            far = int(np.argmin(best))
            sums[cell] = x[far]
            best[far] = np.inf
        centroids = _normalised(sums)
    return centroids


@dataclass(frozen=True, slots=True)
class CellStats:
    """A model version's centroids and its rows per (brand, cell), as the planner needs them."""

    centroids: np.ndarray  # (cells, dim), unit rows
    per_brand: Mapping[str, np.ndarray] = field(default_factory=dict)  # brand → rows per cell
    unassigned: Mapping[str, int] = field(default_factory=dict)  # brand → rows without a cell

    def rows_per_cell(self, brands: Iterable[str] | None) -> np.ndarray:
        wanted = self.per_brand.keys() if brands is None else set(brands)
        out = np.zeros(len(self.centroids), dtype=np.int64)
        for brand in wanted:
            counts = self.per_brand.get(brand)
            if counts is not None:
                out += counts
        return out

    def probe(self, q: np.ndarray, brands: Sequence[str] | None, rows: int) -> tuple[int, ...]:
        """The cells nearest to `q`, in order, until they hold ≥ `rows` of the filter's rows
        (every cell holding any of them if there are fewer); sorted by cell number."""
        counts = self.rows_per_cell(brands)
        order = np.argsort(-(self.centroids @ _normalised(q.reshape(1, -1))[0]), kind="stable")
        order = order[counts[order] > 0]
        covered = np.cumsum(counts[order])
        n = int(np.searchsorted(covered, rows)) + 1
        return tuple(sorted(int(c) for c in order[:n]))


def stats_from_rows(centroids: np.ndarray, rows: Iterable[tuple[str, int | None, int]]) -> CellStats:
    """CellStats from CELL_COUNTS_SQL rows (brand, cell or None, count)."""
    per_brand: dict[str, np.ndarray] = {}
    unassigned: dict[str, int] = {}
    for brand, cell, count in rows:
        if cell is None or not 0 <= cell < len(centroids):  # unknown cells: scanned with NULLs
            unassigned[brand] = unassigned.get(brand, 0) + int(count)
            continue
        per_brand.setdefault(brand, np.zeros(len(centroids), dtype=np.int64))[cell] += int(count)
    return CellStats(centroids, per_brand, unassigned)


async def load_centroids(conn: AsyncConnection[Any], model_version: str) -> np.ndarray | None:
    """The model version's centroids (cells × dim), or None before training."""
    await register_vector_async(conn)
    rows = await (await conn.execute(CENTROIDS_SQL, (model_version,))).fetchall()
    if not rows or [r[0] for r in rows] != list(range(len(rows))):
        return None
    return np.stack([as_array(r[1]) for r in rows])


@dataclass(slots=True)
class CellReport:
    """What `ensure_cells` did: cells trained (0: none), rows assigned, SKU rows recomputed."""

    trained: int = 0
    assigned: int = 0
    skus: int = 0
    skipped: str = ""  # why nothing was done, when so


async def ensure_cells(conn: AsyncConnection[Any], model_version: str, *,
                       min_rows: int = MIN_TRAIN_ROWS, sample: int = TRAIN_SAMPLE,
                       cells: int | None = None, seed: int = 0,
                       batch: int = ASSIGN_BATCH) -> CellReport:
    """Train the model version's cells if it has none and ≥ `min_rows` photos, then give every
    row without a valid cell its cell, then bring the model version's SKU vectors up to date
    (`unde.retrieval.sku_cells.ensure_skus`). Idempotent; one process at a time (others return
    at once).

    Needs an autocommit connection (each batch commits on its own, so a crash loses nothing
    and the next call resumes).
    """
    if not conn.autocommit:
        raise ValueError("ensure_cells needs an autocommit connection")
    await register_vector_async(conn)
    key = int.from_bytes(hashlib.sha256(model_version.encode()).digest()[:4], "big", signed=True)
    got = await (await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_LOCK_CLASS, key))).fetchone()
    if not (got and got[0]):
        return CellReport(skipped="another process is assigning cells")
    row = await (await conn.execute("SHOW statement_timeout")).fetchone()
    timeout = row[0] if row else "0"
    try:
        await conn.execute("SET statement_timeout = 0")
        report = CellReport()
        centroids = await load_centroids(conn, model_version)
        if centroids is None:
            centroids = await _train(conn, model_version, min_rows, sample, cells, seed)
            if centroids is None:
                return CellReport(skipped=f"fewer than {min_rows} rows")
            report.trained = len(centroids)
        report.assigned = await _assign(conn, model_version, centroids, batch)
        from unde.retrieval.sku_cells import ensure_skus  # sku_cells builds on this module

        report.skus = await ensure_skus(conn, model_version, centroids)
        return report
    finally:
        await conn.execute("SELECT set_config('statement_timeout', %s, false)", (timeout,))
        await conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_CLASS, key))


async def _train(conn: AsyncConnection[Any], model_version: str, min_rows: int, sample: int,
                 cells: int | None, seed: int) -> np.ndarray | None:
    row = await (await conn.execute(
        "SELECT count(*) FROM sku_image_embeddings WHERE model_version = %s AND embedding IS NOT NULL",
        (model_version,))).fetchone()
    rows = int(row[0]) if row else 0
    if rows < max(min_rows, 1):
        return None
    picked = await (await conn.execute(
        "SELECT embedding FROM sku_image_embeddings WHERE id IN ("
        " SELECT id FROM sku_image_embeddings WHERE model_version = %s AND embedding IS NOT NULL"
        " ORDER BY md5(id::text || %s) LIMIT %s)", (model_version, str(seed), sample))).fetchall()
    vectors = np.stack([as_array(r[0]) for r in picked])
    n = min(cells or cell_count(rows), len(vectors))
    centroids = train_centroids(vectors, n, seed=seed)
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO embedding_cells (model_version, cell, centroid, trained_rows) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(model_version, i, centroids[i], rows) for i in range(n)])
        # SKU vectors placed by an earlier training are in the wrong cells now: re-placed below.
        await cur.execute("UPDATE sku_embeddings SET cell = NULL WHERE model_version = %s AND cell IS NOT NULL",
                          (model_version,))
    return centroids


async def _assign(conn: AsyncConnection[Any], model_version: str, centroids: np.ndarray,
                  batch: int) -> int:
    """Give every row without a valid cell (NULL, or a number from an older, larger training)
    its nearest cell, `batch` rows per committed UPDATE; returns the rows updated."""
    assigned, after = 0, 0
    n = len(centroids)
    while True:
        rows = await (await conn.execute(
            "SELECT id, embedding FROM sku_image_embeddings WHERE model_version = %s "
            "AND (cell IS NULL OR cell >= %s) AND embedding IS NOT NULL AND id > %s ORDER BY id LIMIT %s",
            (model_version, n, after, batch))).fetchall()
        if not rows:
            return assigned
        ids = [r[0] for r in rows]
        labels = nearest_cells(np.stack([as_array(r[1]) for r in rows]), centroids)
        cursor = await conn.execute(
            "UPDATE sku_image_embeddings AS e SET cell = a.cell "
            "FROM unnest(%s::bigint[], %s::int[]) AS a(id, cell) "
            "WHERE e.id = a.id AND (e.cell IS NULL OR e.cell >= %s)",
            (ids, labels.tolist(), n))
        assigned += max(cursor.rowcount, 0)
        after = ids[-1]
        if len(rows) < batch:
            return assigned
