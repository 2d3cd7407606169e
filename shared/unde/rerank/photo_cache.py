"""Catalog photos as Gemini is sent them, prepared once per process.

Fetching a catalog photo (an HTTP round trip through the connection pool) and preparing it
(decode with validation, shrink to `GEMINI_IMAGE_MAX_SIDE`, encode as JPEG) is most of the
reranker's own CPU per request (bench/rerank_gemini.py), and catalog photos do not change. The
prepared JPEGs live in a cachetools `TTLCache` — least recently used first out, bounded in bytes
(`getsizeof=len`, `RERANK_PHOTO_CACHE_MB`) — keyed by the URL and the photo's content hash when
the candidate carries one (`metadata.image_hashes`, aligned with `image_urls`, as the indexer
stores them): a photo re-indexed under the same URL is a new entry. Without a hash, an entry
lives at most `RERANK_PHOTO_CACHE_TTL_S`, so a photo replaced under its URL is seen again
within that time. A cache hit neither fetches nor decodes. Size 0 turns the cache off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from cachetools import TTLCache
from prometheus_client import Counter

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

    def __init__(self, fetch: PhotoFetcher, *, max_side: int, max_pixels: int, max_bytes: int,
                 ttl_s: float = 6 * 3600.0, timer: Callable[[], float] = time.monotonic) -> None:
        self.fetch = fetch
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self._cache: TTLCache[tuple[str, str | None], bytes] | None = (
            TTLCache(maxsize=max_bytes, ttl=ttl_s, timer=timer, getsizeof=len) if max_bytes > 0 else None)

    @property
    def size_bytes(self) -> int:
        return int(self._cache.currsize) if self._cache is not None else 0

    def __len__(self) -> int:
        return len(self._cache) if self._cache is not None else 0

    async def _prepare(self, url: str) -> bytes:
        raw = await self.fetch(url)
        return await asyncio.to_thread(prepare_jpeg, raw, self.max_side, self.max_pixels, "photo")

    async def jpeg(self, url: str, image_hash: str | None = None) -> bytes:
        """The JPEG to send for `url` (UndeError when it cannot be fetched or decoded)."""
        if self._cache is None:
            PHOTO_CACHE.labels("off").inc()
            return await self._prepare(url)
        key = (url, image_hash)
        cached = self._cache.get(key)
        if cached is not None:
            PHOTO_CACHE.labels("hit").inc()
            return cached
        PHOTO_CACHE.labels("miss").inc()
        prepared = await self._prepare(url)
        if len(prepared) <= self.max_bytes:
            self._cache[key] = prepared  # cachetools evicts expired, then least recently used entries
        return prepared
