"""The embedder's runtime: the loaded model and the image loader, built once per process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from unde.fetch import FetchPolicy
from unde.models.embedding_service import EmbeddingService
from unde.models.registry import load_embedder, resolved_provider
from unde.settings import EmbedderSettings
from unde.vision.image_input import ImageLoader


@dataclass(frozen=True, slots=True)
class Runtime:
    """The loaded model and the image loader (its HTTP client fetches image URLs)."""

    service: EmbeddingService
    loader: ImageLoader

    async def close(self) -> None:
        await self.loader.client.aclose()


async def build_runtime(settings: EmbedderSettings, *, service: EmbeddingService | None = None,
                        loader: ImageLoader | None = None) -> Runtime:
    """The model (loaded in a worker thread) and the loader; a test passes its own of either."""
    if service is None:
        embedder = await asyncio.to_thread(load_embedder, settings, "latency")
        service = EmbeddingService(embedder, provider=resolved_provider(settings))
    loader = loader or ImageLoader(httpx.AsyncClient(timeout=settings.fetch_timeout_s),
                                   FetchPolicy.from_settings(settings), settings.image_max_pixels)
    return Runtime(service, loader)
