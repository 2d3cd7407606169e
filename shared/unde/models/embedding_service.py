"""Running an embedder from async code: off the event loop, one model call at a time.

The latency-tuned session already spreads one call over every intra-op thread, so two calls
at once would only fight for the same cores; requests queue on a semaphore instead, and a
batch request is one model call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from unde.metrics import INFERENCE_SECONDS
from unde.models.base import ImageEmbedder


@dataclass(frozen=True, slots=True)
class Embedded:
    """Vectors for a request and the time the model took."""

    vectors: np.ndarray
    ms: float


class EmbeddingService:
    """An ImageEmbedder behind a worker thread and a concurrency limit."""

    def __init__(self, embedder: ImageEmbedder, *, provider: str, concurrency: int = 1) -> None:
        self.embedder = embedder
        self.provider = provider
        self._slots = asyncio.Semaphore(concurrency)

    async def run_in_thread(self, work: Callable[[], Any]) -> Any:
        """Run CPU work (decoding, cropping) in a worker thread."""
        return await asyncio.to_thread(work)

    async def embed(self, images: Sequence[Image.Image]) -> Embedded:
        """Embed `images` as one batch in a worker thread."""
        mode = "single" if len(images) == 1 else "batch"
        async with self._slots:
            started = time.perf_counter()
            vectors = await asyncio.to_thread(self.embedder.embed, list(images))
            seconds = time.perf_counter() - started
        INFERENCE_SECONDS.labels(self.embedder.model_version, mode).observe(seconds)
        return Embedded(vectors, round(seconds * 1000, 2))

    def describe(self) -> dict[str, Any]:
        """What /healthz reports: provider, model_version, dim, role and threads when known."""
        info: dict[str, Any] = {"provider": self.provider,
                                "model_version": self.embedder.model_version,
                                "dim": self.embedder.dim}
        for name in ("role", "threads"):
            value = getattr(self.embedder, name, None)
            if value is not None:
                info[name] = value
        return info
