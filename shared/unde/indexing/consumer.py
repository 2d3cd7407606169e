"""Queue consumer: claimed jobs → fetch → SHA-256 → skip known → decode → embed → write.

Per batch: fetch every image concurrently through the SSRF-safe fetcher (allow-listed hosts),
hash the bytes, and look the hashes up for this model version — a known hash reuses its stored
vector, so no inference is spent on it. The rest are decoded and embedded in one call in a
worker thread while the event loop already claims and fetches the *next* batch (I/O overlaps
inference). The embeddings are inserted with ``ON CONFLICT (brand, sku_id, image_hash,
model_version) DO NOTHING`` and the jobs are marked done **in the same transaction**: a
consumer killed before the commit leaves no rows and its jobs' leases expire, so they run again
(nothing lost); one killed after the commit has its jobs done (nothing duplicated — and a rerun
of the same image would hit the unique key anyway).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from PIL import Image
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from unde.db.pgvector import as_array
from unde.errors import BadInput, NotAllowed, UndeError
from unde.fetch import FetchPolicy, fetch_bytes
from unde.indexing import queue
from unde.indexing.queue import Job
from unde.metrics import IMAGES_INDEXED
from unde.models.base import ImageEmbedder
from unde.retrieval.sku_vectors import upsert_skus
from unde.vision.images import decode_image

log = logging.getLogger(__name__)

_KNOWN_SQL = """
SELECT DISTINCT ON (image_hash) image_hash, embedding FROM sku_image_embeddings
WHERE model_version = %s AND image_hash = ANY(%s) AND embedding IS NOT NULL
"""

_INSERT_SQL = """
INSERT INTO sku_image_embeddings
    (sku_id, brand, image_url, image_rank, image_hash, embedding, model_version, metadata)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (brand, sku_id, image_hash, model_version) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How a consumer works: batch size, concurrency, lease and retry policy."""

    batch_size: int = 32
    fetch_concurrency: int = 8
    lease_s: float = 300.0
    max_attempts: int = 5
    backoff_base_s: float = 5.0
    max_pixels: int = 40_000_000


@dataclass(slots=True)
class IndexCounts:
    """What a consumer run did. `inferred` images went through the model."""

    claimed: int = 0
    inferred: int = 0
    reused: int = 0
    written: int = 0
    retried: int = 0
    dead: int = 0
    batches: int = 0
    seconds: float = 0.0

    def add(self, other: IndexCounts) -> None:
        for name in ("claimed", "inferred", "reused", "written", "retried", "dead", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, float | int]:
        return {"claimed": self.claimed, "inferred": self.inferred, "reused": self.reused,
                "written": self.written, "retried": self.retried, "dead": self.dead,
                "batches": self.batches, "seconds": round(self.seconds, 3)}


@dataclass(slots=True)
class _Batch:
    """One claimed batch on its way through the pipeline."""

    jobs: list[Job]
    digests: dict[int, str] = field(default_factory=dict)          # job id → SHA-256
    known: dict[str, np.ndarray] = field(default_factory=dict)     # hash → stored vector
    to_embed: dict[str, Image.Image] = field(default_factory=dict)  # hash → decoded image
    errors: dict[int, UndeError] = field(default_factory=dict)     # job id → why it failed


def is_permanent(error: UndeError) -> bool:
    """Failures that no retry can fix: refused URL, not an image, too large."""
    return isinstance(error, NotAllowed) or (
        isinstance(error, BadInput) and error.status_code in (413, 415))


class IndexConsumer:
    """Claims jobs of one model version and embeds them, batch after batch."""

    def __init__(self, pool: AsyncConnectionPool, embedder: ImageEmbedder,
                 client: httpx.AsyncClient, policy: FetchPolicy,
                 config: ConsumerConfig | None = None) -> None:
        self.pool = pool
        self.embedder = embedder
        self.client = client
        self.policy = policy
        self.config = config or ConsumerConfig()

    @property
    def model_version(self) -> str:
        return self.embedder.model_version

    async def run(self, max_jobs: int | None = None, *, stop: asyncio.Event | None = None,
                  on_batch: Callable[[IndexCounts], None] | None = None) -> IndexCounts:
        """Process batches until the queue has nothing ready, `max_jobs` or `stop` is set."""
        started = time.perf_counter()
        total = IndexCounts()
        remaining = max_jobs if max_jobs is not None else -1
        upcoming: asyncio.Task[_Batch] | None = asyncio.create_task(self._prepare(self._next_size(remaining)))
        try:
            while upcoming is not None:
                batch = await upcoming
                upcoming = None
                if not batch.jobs:
                    break
                remaining = remaining - len(batch.jobs) if remaining >= 0 else -1
                if remaining != 0 and not (stop is not None and stop.is_set()):
                    upcoming = asyncio.create_task(self._prepare(self._next_size(remaining)))
                counts = await self._finish(batch)
                total.add(counts)
                if on_batch is not None:
                    on_batch(counts)
        finally:
            if upcoming is not None:
                await self._abandon(upcoming)
        total.seconds = time.perf_counter() - started
        return total

    def _next_size(self, remaining: int) -> int:
        return self.config.batch_size if remaining < 0 else min(self.config.batch_size, remaining)

    async def _abandon(self, task: asyncio.Task[_Batch]) -> None:
        """Give back a prefetched batch we will not process (its attempt is not counted)."""
        try:
            batch = await task
        except Exception:  # the run is already failing; the leases will expire
            log.warning("prefetch failed while stopping", exc_info=True)
            return
        async with self.pool.connection() as conn:
            await queue.release(conn, [job.id for job in batch.jobs])

    async def _prepare(self, limit: int) -> _Batch:
        """Claim, fetch + hash, look up known hashes, decode the new ones (off the loop)."""
        async with self.pool.connection() as conn:
            jobs = await queue.claim(conn, self.model_version, limit, lease_s=self.config.lease_s,
                                     max_attempts=self.config.max_attempts)
        batch = _Batch(jobs)
        if not jobs:
            return batch
        fetched = await self._fetch_all(jobs, batch)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(_KNOWN_SQL, (self.model_version, list(set(batch.digests.values()))))
                          ).fetchall()
        batch.known = {row[0]: as_array(row[1]) for row in rows}
        new = {digest: data for digest, data in fetched.items() if digest not in batch.known}
        decoded, bad = await asyncio.to_thread(self._decode_all, new)
        batch.to_embed = decoded
        for job in jobs:
            digest = batch.digests.get(job.id)
            if digest in bad:
                batch.errors[job.id] = bad[digest]
        return batch

    async def _fetch_all(self, jobs: Sequence[Job], batch: _Batch) -> dict[str, bytes]:
        gate = asyncio.Semaphore(self.config.fetch_concurrency)
        fetched: dict[str, bytes] = {}

        async def fetch(job: Job) -> None:
            async with gate:
                try:
                    data = await fetch_bytes(self.client, job.image_url, self.policy)
                except UndeError as exc:
                    batch.errors[job.id] = exc
                    return
            digest = hashlib.sha256(data).hexdigest()
            batch.digests[job.id] = digest
            fetched[digest] = data

        await asyncio.gather(*(fetch(job) for job in jobs))
        return fetched

    def _decode_all(self, new: dict[str, bytes]) -> tuple[dict[str, Image.Image], dict[str, UndeError]]:
        decoded: dict[str, Image.Image] = {}
        bad: dict[str, UndeError] = {}
        for digest, data in new.items():
            try:
                decoded[digest] = decode_image(data, max_pixels=self.config.max_pixels, field="image_url")
            except BadInput as exc:
                bad[digest] = exc
        return decoded, bad

    def _embed(self, images: dict[str, Image.Image]) -> dict[str, np.ndarray]:
        if not images:
            return {}
        digests = list(images)
        vectors = self.embedder.embed([images[d] for d in digests])
        if vectors.shape != (len(digests), self.embedder.dim):
            raise ValueError(f"embedder returned shape {vectors.shape} for {len(digests)} images")
        return dict(zip(digests, np.asarray(vectors, dtype=np.float32), strict=True))

    async def _finish(self, batch: _Batch) -> IndexCounts:
        """Embed the batch's new images (worker thread) and write everything in one transaction."""
        counts = IndexCounts(claimed=len(batch.jobs), batches=1)
        try:
            vectors = await asyncio.to_thread(self._embed, batch.to_embed)
        except Exception as exc:  # a model failure fails the batch's new images, then retries
            log.exception("embedding a batch of %d images failed", len(batch.to_embed))
            vectors = {}
            for job in batch.jobs:
                if batch.digests.get(job.id) in batch.to_embed:
                    batch.errors[job.id] = UndeError(f"embedding failed: {exc.__class__.__name__}")
        counts.inferred = len(vectors)
        async with self.pool.connection() as conn, conn.transaction():
            await self._write(conn, batch, vectors, counts)
        return counts

    async def _write(self, conn: AsyncConnection[Any], batch: _Batch,
                     vectors: dict[str, np.ndarray], counts: IndexCounts) -> None:
        rows: list[tuple[Any, ...]] = []
        done = []
        for job in batch.jobs:
            if job.id in batch.errors:
                continue
            digest = batch.digests[job.id]
            vector = batch.known.get(digest)
            if vector is None:
                vector = vectors[digest]
            else:
                counts.reused += 1
            rows.append((job.sku_id, job.brand, job.image_url, job.image_rank, digest, vector,
                         job.model_version, Jsonb(dict(job.metadata))))
            done.append(job.id)
        if rows:
            async with conn.cursor() as cur:
                await cur.executemany(_INSERT_SQL, rows)
                counts.written = max(cur.rowcount, 0)
            IMAGES_INDEXED.labels(batch.jobs[0].model_version).inc(counts.written)
            await upsert_skus(conn, self.model_version, {(row[1], row[0]) for row in rows})
        await queue.mark_done(conn, done)
        for job in batch.jobs:
            error = batch.errors.get(job.id)
            if error is None:
                continue
            status = await queue.mark_failed(
                conn, job, f"{error.code}: {error}", max_attempts=self.config.max_attempts,
                backoff_base_s=self.config.backoff_base_s, permanent=is_permanent(error))
            if status == "dead":
                counts.dead += 1
            else:
                counts.retried += 1
