"""The planner's cached counts (`unde.retrieval.knn_catalog`): an expired cache answers at once
while one background task refreshes it; a failed refresh keeps the old counts; a cache past
the stale limit, or on a plain connection, is reloaded inline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from unde.db.pool import open_pool
from unde.retrieval import knn_catalog
from unde.retrieval.knn import knn_images
from unde.retrieval.knn_catalog import refreshing

from .conftest import MODEL, Catalog, K, queries


async def test_an_expired_cache_answers_at_once_and_refreshes_in_the_background(
        loaded_url: str, catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = await open_pool(loaded_url, name="test", min_size=1, max_size=2, vector=True)
    try:
        q = queries(catalog, 1, seed=61)[0]

        async def search() -> list[Any]:
            return await asyncio.wait_for(knn_images(pool, q, k=K, model_version=MODEL, brands=["b0", "b2"],
                                                     memory_mb=0), timeout=30)

        first = await search()
        gate, started = asyncio.Event(), asyncio.Event()
        loads: list[str] = []
        real = knn_catalog._load_async

        async def gated_load(profile: Any, conn: Any, model_version: str) -> Any:
            loads.append(model_version)
            started.set()
            await gate.wait()  # a search waiting for this load would time out
            return await real(profile, conn, model_version)

        monkeypatch.setattr(knn_catalog, "_load_async", gated_load)
        monkeypatch.setattr(knn_catalog, "COUNTS_TTL_S", 0.0)
        assert await search() == first  # answered from the expired counts
        await asyncio.wait_for(started.wait(), timeout=30)  # the refresh runs on another connection
        assert loads == [MODEL] and len(refreshing(pool)) == 1
        assert await search() == first and loads == [MODEL]  # one refresh at a time
        gate.set()
        await asyncio.gather(*refreshing(pool))
        assert refreshing(pool) == []
        stamp = knn_catalog._profiles[pool].catalogs[MODEL][0]

        async def failing_load(profile: Any, conn: Any, model_version: str) -> Any:
            raise OSError("database went away")

        monkeypatch.setattr(knn_catalog, "_load_async", failing_load)
        assert await search() == first
        await asyncio.gather(*refreshing(pool))
        assert knn_catalog._profiles[pool].catalogs[MODEL][0] == stamp  # the old counts keep serving

        monkeypatch.setattr(knn_catalog, "_load_async", gated_load)
        monkeypatch.setattr(knn_catalog, "STALE_LIMIT_S", 0.0)  # too old to serve: reloaded inline
        assert await search() == first
        assert loads == [MODEL, MODEL] and refreshing(pool) == []
        assert knn_catalog._profiles[pool].catalogs[MODEL][0] > stamp
    finally:
        await pool.close()
