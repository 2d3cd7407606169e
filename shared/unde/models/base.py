"""What every image model looks like to the rest of the project.

An embedder turns RGB images into rows of a float32 matrix, one L2-normalised row per image,
so cosine similarity is a dot product and pgvector's cosine distance is ``1 - dot``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from PIL import Image

EMBEDDING_DIM = 512

#: How a model's sessions are tuned: one image at a time, fast (`embedder`), or big batches
#: (`indexer`).
Role = Literal["latency", "throughput"]


@runtime_checkable
class ImageEmbedder(Protocol):
    """An image model: `embed` maps n images to an (n, dim) float32 matrix of unit rows."""

    model_version: str
    dim: int

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed `images` (RGB) in one batch; rows are L2-normalised, dtype float32."""
        ...


def l2_normalise(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of `vectors` scaled to unit length (all-zero rows stay zero), as float32."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, eps)).astype(np.float32, copy=False)
