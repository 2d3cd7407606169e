"""Issue 20: catalog photos are prepared once (byte-bounded LRU keyed by URL + content hash)."""

from __future__ import annotations

import pytest

from tests.rerank.conftest import jpeg
from unde.errors import BadInput
from unde.rerank import photo_cache
from unde.rerank.photo_cache import PreparedPhotos


class Photos:
    def __init__(self) -> None:
        self.by_url = {f"http://img/{i}.jpg": jpeg((i * 20, 10, 10), size=(400, 500)) for i in range(6)}
        self.fetches = 0

    async def fetch(self, url: str) -> bytes:
        self.fetches += 1
        return self.by_url[url]


@pytest.fixture
def prepares(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = photo_cache.prepare_jpeg

    def counting(data: bytes, max_side: int, max_pixels: int, field: str) -> bytes:
        calls.append(field)
        return real(data, max_side, max_pixels, field)

    monkeypatch.setattr(photo_cache, "prepare_jpeg", counting)
    return calls


async def test_second_use_neither_fetches_nor_prepares(prepares: list[str]) -> None:
    source = Photos()
    photos = PreparedPhotos(source.fetch, max_side=64, max_pixels=10**7, max_bytes=1_000_000)
    first = await photos.jpeg("http://img/1.jpg")
    again = await photos.jpeg("http://img/1.jpg")
    assert first == again and first[:2] == b"\xff\xd8" and len(prepares) == 1 and source.fetches == 1
    assert photos.size_bytes == len(first)


async def test_a_photo_replaced_under_its_url_is_prepared_anew(prepares: list[str]) -> None:
    source = Photos()
    clock = [0.0]
    photos = PreparedPhotos(source.fetch, max_side=64, max_pixels=10**7, max_bytes=1_000_000, ttl_s=60,
                            timer=lambda: clock[0])
    old = await photos.jpeg("http://img/2.jpg", "hash-a")
    source.by_url["http://img/2.jpg"] = jpeg((0, 200, 0), size=(400, 500))
    assert await photos.jpeg("http://img/2.jpg", "hash-b") != old  # a new content hash: a new entry
    assert len(prepares) == 2
    # without a hash the entry is trusted until its time-to-live has passed
    unhashed = await photos.jpeg("http://img/3.jpg")
    source.by_url["http://img/3.jpg"] = jpeg((0, 0, 200), size=(400, 500))
    clock[0] = 59.0
    assert await photos.jpeg("http://img/3.jpg") == unhashed
    clock[0] = 61.0
    assert await photos.jpeg("http://img/3.jpg") != unhashed
    assert len(prepares) == 4


async def test_bounded_in_bytes(prepares: list[str]) -> None:
    source = Photos()
    one = len(await PreparedPhotos(source.fetch, max_side=64, max_pixels=10**7, max_bytes=10**6).jpeg(
        "http://img/0.jpg"))
    photos = PreparedPhotos(source.fetch, max_side=64, max_pixels=10**7, max_bytes=int(one * 2.5))
    for i in range(6):
        await photos.jpeg(f"http://img/{i}.jpg")
    assert photos.size_bytes <= photos.max_bytes and len(photos) == 2
    prepares.clear()
    await photos.jpeg("http://img/5.jpg")  # most recent: still there
    await photos.jpeg("http://img/0.jpg")  # evicted long ago
    assert len(prepares) == 1


async def test_size_zero_turns_it_off(prepares: list[str]) -> None:
    source = Photos()
    photos = PreparedPhotos(source.fetch, max_side=64, max_pixels=10**7, max_bytes=0)
    for _ in range(3):
        await photos.jpeg("http://img/3.jpg")
    assert len(prepares) == 3 and len(photos) == 0


async def test_an_undecodable_photo_is_an_error_and_not_cached() -> None:
    async def fetch(url: str) -> bytes:
        return b"not an image"

    photos = PreparedPhotos(fetch, max_side=64, max_pixels=10**7, max_bytes=10**6)
    with pytest.raises(BadInput):
        await photos.jpeg("http://img/x.jpg")
    assert len(photos) == 0


def test_candidate_hash_of_a_photo() -> None:
    from unde.rerank.candidates import RerankCandidate

    candidate = RerankCandidate("b", "x", 0.5, ("u1", "u2"), {"image_hashes": ["h1", "h2"]})
    assert candidate.image_hash("u2") == "h2" and candidate.image_hash("u3") is None
    assert RerankCandidate("b", "x", 0.5, ("u1",), {}).image_hash("u1") is None
