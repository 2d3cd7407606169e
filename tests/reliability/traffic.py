"""Sending recognitions the way the app does, with bounded concurrency, and measuring them."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from tests.reliability.stack import Photo


@dataclass
class Outcome:
    """One request as the app saw it."""

    request_id: str
    status: int | None = None  # None: no answer (client time-out or connection error)
    latency_s: float = 0.0
    degraded: list[str] = field(default_factory=list)
    partial: bool = False
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.status == 200

    @property
    def hung(self) -> bool:
        return self.error is not None and self.error.startswith("timeout")


async def send_one(client: httpx.AsyncClient, base_url: str, photo: Photo, timeout_s: float) -> Outcome:
    """POST /recognize with an upload and a UUID `x-request-id` (the log row's id)."""
    outcome = Outcome(str(uuid.uuid4()))
    data = {"user_mall": photo.mall} if photo.mall else {}
    started = time.perf_counter()
    try:
        response = await client.post(
            f"{base_url}/recognize", files={"image": (photo.path.name, photo.path.read_bytes(), "image/jpeg")},
            data=data, headers={"x-request-id": outcome.request_id}, timeout=timeout_s)
    except httpx.TimeoutException as exc:
        outcome.error = f"timeout after {timeout_s:.0f}s ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    else:
        outcome.status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200:
            outcome.degraded = list(body.get("degraded") or [])
            outcome.partial = any(item.get("partial") for item in body.get("items") or [])
        else:
            outcome.error = f"HTTP {response.status_code}: {str(body)[:200]}"
    outcome.latency_s = time.perf_counter() - started
    return outcome


async def send_batch(base_url: str, photos: Sequence[Photo], count: int, concurrency: int,
                     timeout_s: float, *, spacing_s: float = 0.0) -> list[Outcome]:
    """Send `count` requests (photos in turn), at most `concurrency` in flight; `spacing_s`
    spreads their starts so a fault injected mid-run meets requests in every phase."""
    limit = asyncio.Semaphore(concurrency)
    cycle = itertools.cycle(photos)
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)

    async with httpx.AsyncClient(limits=limits) as client:
        async def bounded(index: int, photo: Photo) -> Outcome:
            await asyncio.sleep(index * spacing_s)
            async with limit:
                return await send_one(client, base_url, photo, timeout_s)

        return list(await asyncio.gather(*(bounded(i, next(cycle)) for i in range(count))))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]
