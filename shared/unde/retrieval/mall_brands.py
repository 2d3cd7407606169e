"""Which brands have a store in a mall — the pre-filter of visual search.

Read from staging `raw_stores` and cached per mall for `ttl_s` seconds: the list changes when
a store opens or closes, not per request. Concurrent misses for one mall share one query. If
the database fails and an expired list is cached, the stale list is served (a store list a few
minutes old beats failing the search); with nothing cached the error is raised. The query
waits and runs within the request's budget (`unde.db.pool.budgeted`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import psycopg
from psycopg_pool import AsyncConnectionPool

from unde import budget
from unde.db.pool import budgeted
from unde.errors import StoreError

log = logging.getLogger(__name__)

BRANDS_SQL = "SELECT DISTINCT brand FROM raw_stores WHERE mall_name = %s ORDER BY brand"
POOL_WAIT_S = 2.0  # longest wait for a connection (less when the request's budget has less)


class MallBrands:
    """TTL cache of `mall name → brands with a store there`."""

    def __init__(self, pool: AsyncConnectionPool, ttl_s: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.queries = 0  # database round trips (tests, metrics)

    def _fresh(self, mall: str) -> tuple[str, ...] | None:
        cached = self._cache.get(mall)
        if cached is not None and self._clock() - cached[0] < self.ttl_s:
            return cached[1]
        return None

    async def brands(self, mall: str) -> tuple[str, ...]:
        """Brands with at least one store in `mall` (empty when the mall is unknown)."""
        fresh = self._fresh(mall)
        if fresh is not None:
            return fresh
        lock = self._locks.setdefault(mall, asyncio.Lock())
        async with lock:
            fresh = self._fresh(mall)
            if fresh is not None:
                return fresh
            try:
                found = await self._query(mall)
            except (psycopg.Error, StoreError) as exc:
                if mall in self._cache:
                    log.warning("raw_stores unavailable, serving a stale brand list: %s", exc)
                    return self._cache[mall][1]
                raise StoreError(f"cannot read the brands of mall {mall!r}: {exc}") from exc
            self._cache[mall] = (self._clock(), found)
            return found

    async def _query(self, mall: str) -> tuple[str, ...]:
        self.queries += 1
        async with budgeted(self.pool, budget.current(), POOL_WAIT_S) as conn:
            rows = await (await conn.execute(BRANDS_SQL, (mall,))).fetchall()
        return tuple(str(row[0]) for row in rows)
