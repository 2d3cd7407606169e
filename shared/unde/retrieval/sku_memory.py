"""The SKU and photo vectors held in the searching process: the SKU stage ranked by numpy.

Why (bench/pgvector.py, 47K SKUs × 512, pgvector 0.6.2): inside PostgreSQL ranking the ≈ 1,600
SKU vectors of a query's nearest cells costs ≈ 2–4 ms (≈ 2 µs per 2 KB vector read and ranked
through the executor), about half of the statement. numpy ranks the same rows in ≈ 0.5–1.5 ms
in the gateway's process (more when the query has left the CPU caches cold). The SKU means
alone cannot tell which of ≈ 100 close SKUs hold the k best photos, so the server would still
read and rank ≈ 500–1,000 photos (≈ 2–5 ms); the process therefore also holds every photo
vector (int16, `PHOTO_SCALE`) and keeps only the SKUs owning a photo that can be among the k
best of theirs (≈ 30 SKUs), whose photos the server then ranks exactly. The matrix costs dim × 4 bytes
per SKU and dim × 2 per photo (47K SKUs and 235K photos × 512: 92 + 230 MiB); `SKU_MEMORY_MB`
caps it, and a cap that fits only the SKU vectors keeps those alone.

Consistency: a matrix serves only while it was read for the SKU counts the planner holds (the
same `SkuCounts.signature`, which covers the centroids too), and, as in the server-side SKU
stage, only for brands whose loaded photos are exactly as many as the brand has
(`SkuMatrix.complete`); any other search runs the server-side SKU stage, which reads the
current rows. Every photo of the chosen SKUs is read and ranked by the server, so a photo added
to a chosen SKU is ranked at once (a photo added to any SKU also changes the counts, so
searches fall back to the server until the re-read); only a photo replaced by another of the
same SKU, which leaves every count as it was, waits for the hourly re-read to steer the choice.
Whenever a count refresh (`knn_catalog`) brings new SKU counts, or the matrix is older than
`MATRIX_MAX_AGE_S`, the matrix is re-read in the background, a few cells per statement so the
event loop is never held for long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg import AsyncConnection
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.pq import Format
from threadpoolctl import threadpool_limits

from unde.retrieval.sku_cells import covers

#: Largest matrix a process loads (MB); 0 disables the in-memory stage.
SKU_MEMORY_MB = 512.0
#: A matrix is re-read at least this often, even when the SKU counts look unchanged (a SKU
#: replaced by another in the same brand and cell leaves the counts as they were).
MATRIX_MAX_AGE_S = 3600.0
#: Cells read per statement while loading: ≈ 350 SKUs and 1,800 photos at 47K SKUs in 512 cells.
LOAD_CELLS = 4

#: The photos of the SKUs in a range of cells, grouped by SKU in matrix order; a SKU's vector is
#: the mean of these (what `sku_cells` stores), so SKU and photo rows come from one snapshot.
ROWS_SQL = ("SELECT s.cell, s.brand, s.sku_id, p.embedding FROM sku_embeddings AS s "
            "JOIN sku_image_embeddings AS p ON p.model_version = s.model_version AND p.brand = s.brand "
            "AND p.sku_id = s.sku_id WHERE s.model_version = %s AND s.cell >= %s AND s.cell < %s "
            "AND p.embedding IS NOT NULL ORDER BY s.cell, s.brand, s.sku_id")


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
#: Photo vectors are held as int16: round(value × PHOTO_SCALE) of the unit vector (every value
#: of a unit vector lies in [−1, 1]). Rounding moves each value by ≤ 1 / (2 × PHOTO_SCALE), so a
#: photo's cosine with a unit query q moves by at most ‖q‖₁ / (2 × PHOTO_SCALE) (≈ 0.0003 at 512
#: dims); int16 also converts to float32 at memory speed, unlike float16 in numpy.
PHOTO_SCALE = 32767.0
#: Float32 summation error allowance of a 512–2048-dim cosine.
SUM_SLACK = 1e-4
#: BLAS threads of a searching process. Its matrix products are small (≈ 1,600 × 512 per
#: search) and its concurrency comes from requests; OpenBLAS would split each product over
#: every core and its worker threads then spin-wait, taking the cores the database and the
#: other requests need. Measured on this 2-core machine (bench/pgvector.py, two runs each):
#: client-side p99 8.5–9.5 ms with one thread against 11.6–14.0 ms with two, p50 unchanged.
BLAS_THREADS = 1
#: Filters whose spans a matrix keeps ready (a mall's filter is the same on every search).
FILTERS_KEPT = 256


def limit_blas_threads() -> None:
    """Keep numpy's BLAS to `BLAS_THREADS` in this process (a searching process calls it once
    at start-up; see `BLAS_THREADS`)."""
    threadpool_limits(limits=BLAS_THREADS, user_api="blas")


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
    `signature` the SKU counts it was read for. `photo_vectors` (int16: unit rows × `PHOTO_SCALE`;
    None when only the SKU vectors fit) holds SKU row i's photos at
    ``photo_starts[i]:photo_starts[i + 1]``."""

    vectors: np.ndarray
    brands: np.ndarray
    sku_ids: np.ndarray
    by_brand: Mapping[str, Spans]
    spread: np.ndarray
    photos: Mapping[str, int] = field(default_factory=dict)
    signature: int = 0
    loaded_at: float = 0.0
    n_cells: int = 0
    photo_vectors: np.ndarray | None = None
    photo_starts: np.ndarray | None = None
    _filters: dict[frozenset[str] | None, Spans] = field(default_factory=dict, compare=False, repr=False)

    @property
    def nbytes(self) -> int:
        held = self.photo_vectors.nbytes if self.photo_vectors is not None else 0
        return int(self.vectors.nbytes + held)

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
        (brand, sku_id): `by_means`, then, with the photos held, `by_photos`."""
        norm = float(np.linalg.norm(q))
        query = np.asarray(q, dtype=np.float32) / (norm if norm > 0 else 1.0)
        rows = self.by_means(query, cells, brands, k)
        if self.photo_vectors is not None:
            rows = self.by_photos(query, rows, k)
        return tuple(zip(self.brands[rows].tolist(), self.sku_ids[rows].tolist(), strict=True))

    def by_means(self, query: np.ndarray, cells: Sequence[int], brands: Sequence[str] | None,
                 k: int) -> np.ndarray:
        """Rows of the filter's SKUs in `cells` whose cosine with the unit `query` plus
        `MARGIN_PER_SPREAD` × their photos' spread reaches the (k/3)-th best SKU's cosine, at
        most `MAX_PER_K` × k of them (best bound first)."""
        probed = np.zeros(self.n_cells, dtype=bool)
        probed[[c for c in cells if 0 <= c < self.n_cells]] = True
        starts, stops = self.spans(brands).within(probed)
        if not len(starts):
            return np.zeros(0, dtype=np.int64)
        scores = np.concatenate([self.vectors[a:b] @ query for a, b in zip(starts.tolist(), stops.tolist(),
                                                                           strict=True)])
        rows = _ranges(starts, stops)
        nth = len(scores) - min(len(scores), max(1, k // 3))
        reference = np.partition(scores, nth)[nth]
        bound = scores + MARGIN_PER_SPREAD * self.spread[rows]
        eligible = np.flatnonzero(bound >= reference)
        cap = MAX_PER_K * k
        if len(eligible) > cap:
            eligible = eligible[np.argpartition(-bound[eligible], cap - 1)[:cap]]
        return rows[eligible]

    def by_photos(self, query: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
        """Of SKU `rows`, those owning a photo whose held cosine with the unit `query` reaches the
        k-th best of all their photos' minus `photo_slack(query)`: every SKU that can hold one of
        the k photos nearest to `query` among theirs (a held cosine is within half the slack of
        the true one)."""
        assert self.photo_vectors is not None and self.photo_starts is not None
        starts, stops = self.photo_starts[rows], self.photo_starts[rows + 1]
        index = _ranges(starts, stops)
        if len(index) <= k:
            return rows
        scores = self.photo_vectors[index].astype(np.float32) @ (query / PHOTO_SCALE)
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        best = np.maximum.reduceat(scores, np.cumsum(stops - starts) - (stops - starts))  # every SKU has photos
        return rows[best >= kth - photo_slack(query)]


def photo_slack(query: np.ndarray) -> float:
    """Twice the most a held photo's cosine with `query` can differ from the true one, plus the
    summation allowance: a SKU whose best held photo is further than this below the k-th best
    held photo cannot own one of the k best photos."""
    return float(np.abs(query).sum()) / PHOTO_SCALE + SUM_SLACK


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The row numbers of ranges [start, stop), one after another."""
    lengths = stops - starts
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))


def matrix_bytes(skus: int, dim: int, photos: int = 0) -> int:
    """What a matrix of `skus` rows of `dim` float32 values costs, with `photos` int16 photo rows."""
    return skus * dim * 4 + photos * dim * 2


@dataclass(slots=True)
class _Assembly:
    """A matrix being read: its arrays allocated once for the SKUs and photos the counts
    announced (so a re-read needs one matrix more, not two), filled chunk by chunk."""

    vectors: np.ndarray
    spread: np.ndarray
    photo_vectors: np.ndarray | None
    cells: list[int] = field(default_factory=list)
    brands: list[str] = field(default_factory=list)
    sku_ids: list[str] = field(default_factory=list)
    covered: list[int] = field(default_factory=list)
    photos: int = 0

    @classmethod
    def sized(cls, skus: int, photos: int, dim: int, keep_photos: bool) -> _Assembly:
        return cls(np.empty((skus, dim), dtype=np.float32), np.empty(skus, dtype=np.float32),
                   np.empty((photos, dim), dtype=np.int16) if keep_photos else None)

    def add(self, rows: Sequence[tuple[Any, ...]], dim: int) -> None:
        """ROWS_SQL rows (one per photo, grouped by SKU) whose embedding is pgvector's binary
        form (int16 dim, int16 unused, dim big-endian float32)."""
        photos = _unit(_binary_vectors([r[3] for r in rows], dim))
        keys = [(r[0], r[1], r[2]) for r in rows]
        first = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
        counts = np.diff(np.append(first, len(keys)))
        skus, end = len(self.cells), self.photos + len(photos)
        if skus + len(first) > len(self.vectors) or (self.photo_vectors is not None and end > len(self.photo_vectors)):
            raise CatalogMoved("the catalog grew while its SKU matrix was read")
        if first:
            means = np.add.reduceat(photos, first, axis=0) / counts[:, None]
            norms = np.linalg.norm(means, axis=1)
            self.spread[skus:skus + len(first)] = np.sqrt(np.maximum(0.0, 1.0 - norms**2))  # unit photos
            self.vectors[skus:skus + len(first)] = _unit(means)
        if self.photo_vectors is not None:
            self.photo_vectors[self.photos:end] = np.rint(np.clip(photos, -1.0, 1.0) * PHOTO_SCALE)
        self.photos = end
        self.cells += [keys[i][0] for i in first]
        self.brands += [keys[i][1] for i in first]
        self.sku_ids += [keys[i][2] for i in first]
        self.covered += counts.tolist()

    def matrix(self, n_cells: int, signature: int) -> SkuMatrix:
        n = len(self.cells)
        cells = np.asarray(self.cells, dtype=np.int64)
        brands = np.array(self.brands, dtype=object)
        covered = np.asarray(self.covered, dtype=np.int64)
        # rows are ordered by (cell, brand): a (cell, brand) span starts where either changes
        first = np.ones(n, dtype=bool)
        first[1:] = (cells[1:] != cells[:-1]) | (brands[1:] != brands[:-1])
        starts = np.flatnonzero(first)
        stops = np.append(starts[1:], n)
        names, which = np.unique(brands[starts], return_inverse=True)  # each span's brand
        by_brand = {str(name): Spans(cells[starts[which == i]], starts[which == i], stops[which == i])
                    for i, name in enumerate(names.tolist())}
        per_span = np.add.reduceat(covered, starts) if len(starts) else covered
        photos = {str(name): int(per_span[which == i].sum()) for i, name in enumerate(names.tolist())}
        held = self.photo_vectors[:self.photos] if self.photo_vectors is not None else None
        return SkuMatrix(self.vectors[:n], brands, np.array(self.sku_ids, dtype=object), by_brand, self.spread[:n],
                         photos, signature, time.monotonic(), n_cells, held,
                         np.concatenate(([0], np.cumsum(covered))).astype(np.int64) if held is not None else None)


class CatalogMoved(RuntimeError):
    """The catalog holds more SKUs or photos than the counts a matrix read was started for."""


def _binary_vectors(values: Sequence[bytes], dim: int) -> np.ndarray:
    """float32 (n, dim) from pgvector binary values."""
    stride = 4 + 4 * dim
    raw = b"".join(values)
    if len(raw) != stride * len(values):
        raise ValueError(f"SKU matrix: photo vectors are not {dim}-dimensional")
    return np.ndarray((len(values), dim), dtype=">f4", buffer=raw, offset=4, strides=(stride, 4)).astype(np.float32)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


async def load_matrix(conn: AsyncConnection[Any], model_version: str, n_cells: int, dim: int,
                      signature: int, skus: int, photos: int, keep_photos: bool = True,
                      cells_per_read: int = LOAD_CELLS) -> SkuMatrix:
    """Read the model version's `skus` SKUs in cells 0…n_cells−1 from their `photos` photos
    (the cached counts; CatalogMoved when the catalog has grown since), `cells_per_read` cells
    per statement; `keep_photos`: hold the photo vectors too. The connection needs pgvector
    registered. Rows are converted in a worker thread (numpy's bulk work leaves the GIL; the
    first writes to ≈ 320 MB cost ≈ 0.5–1 s of page faults), so the event loop keeps serving
    searches meanwhile."""
    assembly = _Assembly.sized(skus, photos, dim, keep_photos)
    oid = _vector_oid(conn)
    for first in range(0, n_cells, cells_per_read):
        async with conn.cursor(binary=True) as cur:
            cur.adapters.register_loader(oid, _RawVector)
            await cur.execute(ROWS_SQL, (model_version, first, min(n_cells, first + cells_per_read)))
            await asyncio.to_thread(assembly.add, await cur.fetchall(), dim)
    return await asyncio.to_thread(assembly.matrix, n_cells, signature)


class _RawVector(Loader):
    """pgvector's binary values as bytes (numpy parses a chunk's at once)."""

    format = Format.BINARY

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


def _vector_oid(conn: AsyncConnection[Any]) -> int:
    info = conn.adapters.types.get("vector")
    if info is None:
        raise RuntimeError("SKU matrix: register pgvector on the connection first")
    return int(info.oid)
