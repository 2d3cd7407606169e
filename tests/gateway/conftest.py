"""Fixtures for the vision gateway: the fake Ximilar server and a client pointed at it."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from PIL import Image

from tests.fakes.ximilar_server import COLLECTION_ID, TOKEN, FakeXimilar
from unde.providers.ximilar import CircuitBreaker, TokenBucket, XimilarClient, XimilarConfig


@pytest.fixture
def fake_ximilar() -> Iterator[FakeXimilar]:
    with FakeXimilar() as fake:
        yield fake


def make_client(fake: FakeXimilar, http: httpx.AsyncClient, *, token: str = TOKEN,
                timeout_s: float = 2.0, max_retries: int = 2, failures: int = 3,
                cooldown_s: float = 30.0, rate_per_s: float = 1000.0) -> XimilarClient:
    config = XimilarConfig(base_url=fake.base_url, token=token, collection_id=COLLECTION_ID,
                           timeout_s=timeout_s, max_retries=max_retries, backoff_base_s=0.01,
                           backoff_cap_s=0.05)
    return XimilarClient(http, config, limiter=TokenBucket(rate_per_s),
                         breaker=CircuitBreaker("ximilar-test", failures=failures,
                                                cooldown_s=cooldown_s))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (64, 96),
         stripe: tuple[int, int, int] | None = None) -> bytes:
    """A small JPEG: a flat colour, optionally with horizontal stripes."""
    image = Image.new("RGB", size, colour)
    if stripe is not None:
        for y in range(0, size[1], 12):
            for x in range(size[0]):
                for dy in range(5):
                    if y + dy < size[1]:
                        image.putpixel((x, y + dy), stripe)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()
