"""Catalog photos as Gemini is sent them, prepared once per process.

Preparing a catalog photo (decode with validation, shrink to `GEMINI_IMAGE_MAX_SIDE`, encode as
JPEG) costs far more CPU than fetching it, and catalog photos do not change. The prepared JPEGs
live in a cachetools `LRUCache` bounded in bytes (`getsizeof=len`, `RERANK_PHOTO_CACHE_MB`),
keyed by the URL and the SHA-256 of the fetched bytes — a photo replaced under the same URL is a
new entry, never a stale one. The fetch itself stays (a CDN hit; it is what proves the bytes are
still the same). A size of 0 turns the cache off (every request prepares again).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

from cachetools import LRUCache

from unde.metrics import Counter
from unde.vision.images import decode_image, encode_jpeg

#: Fetches a catalog photo's bytes by URL (raises an UndeError when it cannot).
PhotoFetcher = Callable[[str], Awaitable[bytes]]

PHOTO_CACHE = Counter("unde_rerank_photo_cache_total", "Catalog photo preparations by outcome", ["outcome"])


def prepare_jpeg(data: bytes, max_side: int, max_pixels: int, field: str) -> bytes:
    """Decode (validating), shrink to `max_side` and re-encode as JPEG (CPU; run in a thread)."""
    image = decode_image(data, max_pixels=max_pixels, field=field)
    image.thumbnail((max_side, max_side))
    return encode_jpeg(image, quality=85)


class PreparedPhotos:
    """Fetch + prepare catalog photos, remembering the prepared JPEGs (LRU, bounded in bytes)."""

    def __init__(self, fetch: PhotoFetcher, *, max_side: int, max_pixels: int, max_bytes: int) -> None:
        self.fetch = fetch
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self._cache: LRUCache[tuple[str, str], bytes] | None = (
            LRUCache(maxsize=max_bytes, getsizeof=len) if max_bytes > 0 else None)

    @property
    def size_bytes(self) -> int:
        return int(self._cache.currsize) if self._cache is not None else 0

    def __len__(self) -> int:
        return len(self._cache) if self._cache is not None else 0

    async def jpeg(self, url: str) -> bytes:
        """The JPEG to send for `url` (UndeError when it cannot be fetched or decoded)."""
        raw = await self.fetch(url)
        if self._cache is None:
            PHOTO_CACHE.labels("off").inc()
            return await asyncio.to_thread(prepare_jpeg, raw, self.max_side, self.max_pixels, "photo")
        key = (url, hashlib.sha256(raw).hexdigest())
        cached = self._cache.get(key)
        if cached is not None:
            PHOTO_CACHE.labels("hit").inc()
            return cached
        PHOTO_CACHE.labels("miss").inc()
        prepared = await asyncio.to_thread(prepare_jpeg, raw, self.max_side, self.max_pixels, "photo")
        if len(prepared) <= self.max_bytes:
            self._cache[key] = prepared  # cachetools evicts least recently used entries to fit
        return prepared
