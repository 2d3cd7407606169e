"""The worker loop: drains the queue, exits when idle, stops promptly when told to."""

from __future__ import annotations

import asyncio

from unde.db.embedded import DatabaseUrls
from unde.indexing.service import open_service
from unde.indexing.worker import work
from unde.settings import IndexerSettings, load_settings

from .conftest import CountingEmbedder, ImageCdn, seed_catalog


async def test_worker_drains_queue_then_exits_when_idle_or_stopped(
        staging_url: str, production_url: str, cdn: ImageCdn) -> None:
    images = seed_catalog(staging_url, cdn, products=3, photos=3)
    settings = load_settings(IndexerSettings, allowed_image_hosts=[cdn.host], index_batch_size=4,
                             index_poll_interval_s=0.05)
    service = await open_service(settings, embedder=CountingEmbedder(),
                                 urls=DatabaseUrls(production_url, staging_url))
    try:
        assert (await service.plan()).enqueued == images
        totals = await asyncio.wait_for(work(service, asyncio.Event(), idle_exit_s=0.2,
                                             poll_interval_s=0.05), timeout=60)
        assert totals.claimed == totals.written == images
        assert await service.depth() == 0
        stop = asyncio.Event()
        stop.set()  # SIGTERM before anything is claimed: returns at once
        assert (await asyncio.wait_for(work(service, stop, idle_exit_s=None, poll_interval_s=5),
                                       timeout=5)).claimed == 0
    finally:
        await service.close()
