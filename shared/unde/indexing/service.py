"""The indexer's resources, built once per process: pools, HTTP client, model, consumer.

Shared by the `indexer` function (`POST /embed_batch`, `POST /plan`), the queue worker
(`python -m unde.indexing.worker`) and `unde index`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from psycopg_pool import AsyncConnectionPool

from unde.db.embedded import DatabaseUrls, resolve_urls
from unde.db.pool import open_pool
from unde.fetch import FetchPolicy
from unde.indexing import queue
from unde.indexing.consumer import ConsumerConfig, IndexConsumer, IndexCounts
from unde.indexing.planner import PlanReport, plan_missing
from unde.metrics import QUEUE_DEPTH
from unde.models.base import ImageEmbedder
from unde.retrieval.sku_vectors import IndexReport, ensure_skus, maintain_index
from unde.service_client import http_limits
from unde.settings import IndexerSettings, secret_value

log = logging.getLogger(__name__)

def consumer_config(settings: IndexerSettings) -> ConsumerConfig:
    """The consumer's knobs from INDEX_* settings."""
    return ConsumerConfig(batch_size=settings.index_batch_size,
                          fetch_concurrency=settings.index_fetch_concurrency,
                          lease_s=settings.index_lease_s, max_attempts=settings.index_max_attempts,
                          backoff_base_s=settings.index_backoff_base_s,
                          max_pixels=settings.image_max_pixels)


def fetch_policy(settings: IndexerSettings) -> FetchPolicy:
    """Catalog images may only come from ALLOWED_IMAGE_HOSTS or public addresses."""
    return FetchPolicy.from_settings(settings)


def database_urls(settings: IndexerSettings) -> DatabaseUrls:
    """Configured URLs, or the embedded server's (blocking: starts it if needed)."""
    return resolve_urls(secret_value(settings.production_db_url), secret_value(settings.staging_db_url),
                        settings.data_dir)


@dataclass(slots=True)
class IndexingService:
    """Everything one indexer process needs; `close()` releases it."""

    settings: IndexerSettings
    production: AsyncConnectionPool
    staging: AsyncConnectionPool
    client: httpx.AsyncClient
    embedder: ImageEmbedder

    @property
    def model_version(self) -> str:
        return self.embedder.model_version

    def consumer(self) -> IndexConsumer:
        return IndexConsumer(self.production, self.embedder, self.client,
                             fetch_policy(self.settings), consumer_config(self.settings))

    async def plan(self) -> PlanReport:
        """Enqueue every catalog image missing for the loaded model version."""
        async with self.staging.connection() as staging, self.production.connection() as production:
            return await plan_missing(staging, production, self.model_version)

    async def consume(self, max_jobs: int | None = None, *, stop: asyncio.Event | None = None,
                      on_batch: Callable[[IndexCounts], None] | None = None) -> IndexCounts:
        return await self.consumer().run(max_jobs, stop=stop, on_batch=on_batch)

    async def maintain_search(self) -> tuple[int, IndexReport]:
        """After a drain: SKU means repaired (`ensure_skus`) and the IVFFlat index rebuilt when
        the catalog has outgrown its lists (`unde.retrieval.sku_vectors`); returns the SKUs
        recomputed and the index report."""
        async with self.production.connection() as conn:
            repaired = await ensure_skus(conn, self.model_version)
            index = await maintain_index(conn)
        if repaired or index.rebuilt:
            log.info("search upkeep of %s: %d SKU means repaired; index %s %d lists for %d SKU rows",
                     self.model_version, repaired, "rebuilt with" if index.rebuilt else "keeps",
                     index.lists, index.rows)
        return repaired, index

    async def depth(self) -> int:
        """Jobs ready to run (the KEDA query); also published as a gauge."""
        async with self.production.connection() as conn:
            depth = await queue.queue_depth(conn)
        QUEUE_DEPTH.set(depth)
        return depth

    async def status_counts(self) -> dict[str, int]:
        async with self.production.connection() as conn:
            return await queue.status_counts(conn, self.model_version)

    async def close(self) -> None:
        await self.client.aclose()
        await self.production.close()
        await self.staging.close()


async def open_service(settings: IndexerSettings, embedder: ImageEmbedder | None = None,
                       urls: DatabaseUrls | None = None) -> IndexingService:
    """Open pools and the HTTP client, and load the throughput-tuned model (unless given)."""
    if embedder is None:
        from unde.models.registry import load_embedder

        embedder = await asyncio.to_thread(load_embedder, settings, "throughput")
    if urls is None:
        urls = await asyncio.to_thread(database_urls, settings)
    size = max(2, settings.db_pool_max)
    production = await open_pool(urls.production, name="production", min_size=settings.db_pool_min,
                                 max_size=size, vector=True,
                                 statement_timeout_ms=settings.db_statement_timeout_ms)
    staging = await open_pool(urls.staging, name="staging", min_size=0, max_size=2,
                              statement_timeout_ms=settings.db_statement_timeout_ms)
    limits = http_limits(settings.index_fetch_concurrency * 2, settings.index_fetch_concurrency * 2)
    client = httpx.AsyncClient(timeout=settings.fetch_timeout_s, limits=limits)
    return IndexingService(settings, production, staging, client, embedder)
