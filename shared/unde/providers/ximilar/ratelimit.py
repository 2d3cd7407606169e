"""A process-wide async token bucket: every Ximilar request of the process takes one token.

Tokens refill continuously at `rate_per_s` up to `burst`. Waiters are served in arrival order
(one lock), so a burst of requests is spread out instead of stampeding after a refill. The
clock and sleep are injectable so tests can count the waiting instead of timing it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """At most `rate_per_s` acquisitions per second on average, `burst` at once."""

    def __init__(self, rate_per_s: float, burst: float | None = None, *,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = asyncio.Lock()
        self.waited_s = 0.0  # total time callers spent waiting (metrics, tests)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now

    async def acquire(self) -> None:
        """Take one token, waiting for the refill when the bucket is empty."""
        async with self._lock:
            self._refill()
            if self._tokens < 1.0:
                wait = (1.0 - self._tokens) / self.rate_per_s
                self.waited_s += wait
                await self._sleep(wait)
                self._refill()
                # We slept for exactly the deficit; rounding (or a loop waking a hair early)
                # must not make us sleep again for a sliver.
                self._tokens = max(self._tokens, 1.0)
            self._tokens -= 1.0
