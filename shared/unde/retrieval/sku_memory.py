"""The SKU vectors held in the searching process: the SKU stage ranked by numpy, not the server.

Why (bench/pgvector.py, 47K SKUs × 512, pgvector 0.6.2): inside PostgreSQL ranking the ≈ 1,600
SKU vectors of a query's nearest cells costs ≈ 2–4 ms (≈ 2 µs per 2 KB vector read and ranked
through the executor), about half of the statement. numpy ranks the same rows in ≈ 0.5–1.5 ms
in the gateway's process (more when the query has left the CPU caches cold), and the server is
then only asked for the photos of the chosen SKUs. The matrix costs dim × 4 bytes per SKU (47K ×
512: 92 MiB); `SKU_MEMORY_MB` caps it.

Consistency: a matrix serves only while it was read for the SKU counts the planner holds (the
same `SkuCounts.signature`, which covers the centroids too), and, as in the server-side SKU
stage, only for brands whose loaded SKU rows cover exactly as many photos as the brand has
(`SkuMatrix.complete`); any other search runs the server-side SKU stage, which reads the current
rows. The photos of the chosen SKUs are always read and ranked by the server, so a photo added
to a loaded SKU is ranked at once. Whenever a count refresh (`knn_catalog`) brings new SKU
counts, or the matrix is older than `MATRIX_MAX_AGE_S`, the matrix is re-read in the
background, a few cells per statement so the event loop is never held for long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg import AsyncConnection

from unde.retrieval.cells import as_array
from unde.retrieval.sku_cells import covers

#: Largest matrix a process loads (MB); 0 disables the in-memory stage.
SKU_MEMORY_MB = 256.0
#: A matrix is re-read at least this often, even when the SKU counts look unchanged (a SKU
#: replaced by another in the same brand and cell leaves the counts as they were).
MATRIX_MAX_AGE_S = 3600.0
#: Cells read per statement while loading: ≈ 700 SKUs at 47K SKUs in 512 cells.
LOAD_CELLS = 8

ROWS_SQL = ("SELECT cell, brand, sku_id, photos, embedding FROM sku_embeddings "
            "WHERE model_version = %s AND cell >= %s AND cell < %s ORDER BY cell, brand, sku_id")


#: How many SKUs a memory plan hands to the server, from the SKU means alone. A SKU's photos
#: scatter around its mean: its best photo can beat the mean's cosine by a share of the photos'
#: spread (√(1 − |mean|²) for unit photos: 0 when they agree, larger when they differ). A SKU is
#: chosen when its cosine + MARGIN_PER_SPREAD × spread reaches the cosine of the (k/3)-th best
#: SKU (k photos come from ≈ k/3 SKUs or more), at most MAX_PER_K × k of them. Measured on the
#: bench's 235K photos (every filter, 540 queries), replayed in numpy: 107 SKUs per query on
#: average for k = 50, recall@50 0.996 (worst filter 0.991), against 150 SKUs and 0.995 (0.983)
#: for a fixed 3·k; through the production path the bench measures 0.995 (worst filter 0.988).
MARGIN_PER_SPREAD = 0.08
MAX_PER_K = 4
#: Filters whose spans a matrix keeps ready (a mall's filter is the same on every search).
FILTERS_KEPT = 256


@dataclass(frozen=True, slots=True)
class Spans:
    """Row ranges of a filter's SKUs in a matrix, one per (cell, brand), sorted by start."""

    cells: np.ndarray
    starts: np.ndarray
    stops: np.ndarray

    def within(self, probed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(starts, stops) of the spans in the `probed` cells (a mask), neighbours merged."""
        keep = probed[self.cells]
        starts, stops = self.starts[keep], self.stops[keep]
        if len(starts) > 1:
            first = np.concatenate(([True], starts[1:] != stops[:-1]))  # a span not continuing the previous
            starts, stops = starts[first], stops[np.concatenate((first[1:], [True]))]
        return starts, stops


@dataclass(frozen=True, slots=True)
class SkuMatrix:
    """A model version's SKU vectors in cells 0…n−1, unit rows ordered by (cell, brand, sku_id);
    `by_brand[brand]` that brand's spans (one per cell holding its SKUs); `spread` per row how
    far the SKU's photos lie from their mean; `photos` per brand the photos its rows cover;
    `signature` the SKU counts it was read for."""

    vectors: np.ndarray
    brands: np.ndarray
    sku_ids: np.ndarray
    by_brand: Mapping[str, Spans]
    spread: np.ndarray
    photos: Mapping[str, int] = field(default_factory=dict)
    signature: int = 0
    loaded_at: float = 0.0
    n_cells: int = 0
    _filters: dict[frozenset[str] | None, Spans] = field(default_factory=dict, compare=False, repr=False)

    @property
    def nbytes(self) -> int:
        return int(self.vectors.nbytes)

    def complete(self, brands: Iterable[str], photo_counts: Mapping[str, int]) -> bool:
        """Do the loaded SKU rows of every one of `brands` cover all of its photos now?"""
        return covers(self.photos, brands, photo_counts)

    def spans(self, brands: Sequence[str] | None) -> Spans:
        """The filter's spans (None: every brand), kept for the next search of the same filter."""
        key = None if brands is None else frozenset(brands)
        found = self._filters.get(key)
        if found is None:
            parts = [self.by_brand[b] for b in (self.by_brand if key is None else key) if b in self.by_brand]
            empty = np.zeros(0, dtype=np.int64)
            cells, starts, stops = (np.concatenate([getattr(p, name) for p in parts] or [empty])
                                    for name in ("cells", "starts", "stops"))
            order = np.argsort(starts, kind="stable")
            found = Spans(cells[order], starts[order], stops[order])
            if len(self._filters) >= FILTERS_KEPT:
                self._filters.clear()
            self._filters[key] = found
        return found

    def candidates(self, q: np.ndarray, cells: Sequence[int], brands: Sequence[str] | None,
                   k: int) -> tuple[tuple[str, str], ...]:
        """The SKUs of the filter in `cells` that may hold one of the k photos nearest to `q`, as
        (brand, sku_id): those whose cosine plus `MARGIN_PER_SPREAD` × their photos' spread
        reaches the (k/3)-th best SKU's cosine, at most `MAX_PER_K` × k of them (best bound first)."""
        probed = np.zeros(self.n_cells, dtype=bool)
        probed[[c for c in cells if 0 <= c < self.n_cells]] = True
        starts, stops = self.spans(brands).within(probed)
        if not len(starts):
            return ()
        norm = float(np.linalg.norm(q))
        query = np.asarray(q, dtype=np.float32) / (norm if norm > 0 else 1.0)
        scores = np.concatenate([self.vectors[a:b] @ query for a, b in zip(starts.tolist(), stops.tolist(),
                                                                           strict=True)])
        lengths = stops - starts
        rows = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(len(scores))
        nth = len(scores) - min(len(scores), max(1, k // 3))
        reference = np.partition(scores, nth)[nth]
        bound = scores + MARGIN_PER_SPREAD * self.spread[rows]
        eligible = np.flatnonzero(bound >= reference)
        cap = MAX_PER_K * k
        if len(eligible) > cap:
            eligible = eligible[np.argpartition(-bound[eligible], cap - 1)[:cap]]
        rows = rows[eligible]
        return tuple(zip(self.brands[rows].tolist(), self.sku_ids[rows].tolist(), strict=True))


def matrix_bytes(skus: int, dim: int) -> int:
    """What a matrix of `skus` rows of `dim` float32 values costs."""
    return skus * dim * 4


@dataclass(slots=True)
class _Chunk:
    """Rows of a few cells, converted as they arrive (the event loop is never held long)."""

    cells: np.ndarray
    brands: list[str]
    sku_ids: list[str]
    photos: list[int]
    vectors: np.ndarray
    spread: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[tuple[Any, ...]], dim: int) -> _Chunk:
        vectors = np.zeros((len(rows), dim), dtype=np.float32)
        for i, row in enumerate(rows):
            vectors[i] = as_array(row[4])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms > 0, norms, 1.0)
        spread = np.sqrt(np.maximum(0.0, 1.0 - norms[:, 0] ** 2)).astype(np.float32)  # photos are unit vectors
        return cls(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                   [r[1] for r in rows], [r[2] for r in rows], [int(r[3]) for r in rows], vectors, spread)


def _build(chunks: Sequence[_Chunk], n_cells: int, dim: int, signature: int) -> SkuMatrix:
    cells = np.concatenate([c.cells for c in chunks]) if chunks else np.zeros(0, dtype=np.int64)
    brands = np.array([b for c in chunks for b in c.brands], dtype=object)
    covered = np.array([p for c in chunks for p in c.photos], dtype=np.int64)
    # rows are ordered by (cell, brand): a (cell, brand) span starts where either changes
    first = np.ones(len(cells), dtype=bool)
    first[1:] = (cells[1:] != cells[:-1]) | (brands[1:] != brands[:-1])
    starts = np.flatnonzero(first)
    stops = np.append(starts[1:], len(cells))
    names, which = np.unique(brands[starts], return_inverse=True)  # each span's brand
    by_brand = {str(name): Spans(cells[starts[which == i]], starts[which == i], stops[which == i])
                for i, name in enumerate(names.tolist())}
    per_span = np.add.reduceat(covered, starts) if len(starts) else covered
    photos = {str(name): int(per_span[which == i].sum()) for i, name in enumerate(names.tolist())}
    vectors = (np.concatenate([c.vectors for c in chunks]) if chunks
               else np.zeros((0, dim), dtype=np.float32))
    spread = np.concatenate([c.spread for c in chunks]) if chunks else np.zeros(0, dtype=np.float32)
    return SkuMatrix(vectors, brands, np.array([s for c in chunks for s in c.sku_ids], dtype=object),
                     by_brand, spread, photos, signature, time.monotonic(), n_cells)


async def load_matrix(conn: AsyncConnection[Any], model_version: str, n_cells: int, dim: int,
                      signature: int, cells_per_read: int = LOAD_CELLS) -> SkuMatrix:
    """Read the model version's SKU vectors in cells 0…n_cells−1, `cells_per_read` cells per
    statement (yielding to the event loop between reads). The connection needs pgvector
    registered."""
    chunks: list[_Chunk] = []
    for first in range(0, n_cells, cells_per_read):
        async with conn.cursor(binary=True) as cur:
            await cur.execute(ROWS_SQL, (model_version, first, min(n_cells, first + cells_per_read)))
            chunks.append(_Chunk.of(await cur.fetchall(), dim))
        await asyncio.sleep(0)
    return _build(chunks, n_cells, dim, signature)
