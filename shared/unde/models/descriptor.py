"""The offline garment embedder: a classical 512-d descriptor, no learned weights.

This is the local default when no FashionCLIP export is present — an honest baseline, not a
neural model (its quality on the synthetic data is measured by ``bench/descriptor_quality.py``).
Per image, on a copy downscaled to ~128 px:

1. foreground: border colour model (`unde.models.foreground`);
2. colour over the foreground: soft CIELAB histogram, 4×4 colour layout, neighbour ΔE
   contrast histogram;
3. texture: gradient orientation/magnitude histograms, LBP at two radii, log-polar Fourier
   energy (stripes and checks);
4. shape: silhouette occupancy grid, aspect/fill/Hu moments.

Each block is L2-normalised and multiplied by its weight; the 512-d concatenation is
L2-normalised, so cosine similarity is a weighted mix of the blocks' cosines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from unde.models import descriptor_blocks as blocks
from unde.models.base import EMBEDDING_DIM, l2_normalise
from unde.models.foreground import foreground_mask, rgb_to_lab

MODEL_VERSION = "unde-descriptor-v1"
WORK_SIDE = 128


@dataclass(frozen=True, slots=True)
class Garment:
    """One image prepared for the blocks: Lab pixels, foreground mask and its box."""

    lab: np.ndarray
    mask: np.ndarray
    inner: np.ndarray  # foreground away from its outline (texture without silhouette edges)
    box: tuple[int, int, int, int]

    def crop(self, values: np.ndarray) -> np.ndarray:
        y0, y1, x0, x1 = self.box
        return values[y0:y1, x0:x1]


Block = Callable[[Garment], np.ndarray]

#: (name, dimension, weight, function). Dimensions sum to 512.
BLOCKS: tuple[tuple[str, int, float, Block], ...] = (
    ("colour_histogram", blocks.COLOUR_HIST_DIM, 1.0,
     lambda g: blocks.colour_histogram(g.lab, g.mask)),
    ("colour_layout", blocks.COLOUR_LAYOUT_DIM, 0.35,
     lambda g: blocks.colour_layout(g.lab, g.mask, g.box)),
    ("colour_contrast", blocks.CONTRAST_BINS, 0.35,
     lambda g: blocks.colour_contrast(g.lab, g.inner)),
    ("gradients", blocks.GRADIENT_DIM, 0.3,
     lambda g: blocks.gradient_histogram(g.lab[..., 0], g.inner)),
    ("lbp", blocks.LBP_DIM, 0.3,
     lambda g: blocks.lbp_histogram(g.lab[..., 0], g.inner)),
    ("spectrum", blocks.SPECTRUM_DIM, 0.35,
     lambda g: blocks.stripe_spectrum(g.crop(g.lab[..., 0]), g.crop(g.mask))),
    ("silhouette", blocks.SHAPE_GRID_DIM, 0.35,
     lambda g: blocks.silhouette_grid(g.crop(g.mask))),
    ("shape_moments", blocks.SHAPE_MOMENTS_DIM, 0.2,
     lambda g: blocks.shape_moments(g.mask, g.box)),
)
assert sum(dim for _, dim, _, _ in BLOCKS) == EMBEDDING_DIM


def working_copy(image: Image.Image, side: int = WORK_SIDE) -> np.ndarray:
    """(h, w, 3) uint8 RGB with the longer side at most `side` (box-filtered, fast)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    scale = side / max(image.size)
    if scale < 1:
        size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image)


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, mode="constant")
    h, w = mask.shape
    return np.minimum.reduce([padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                              for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))])


def prepare(image: Image.Image) -> Garment:
    """Downscale, convert to Lab and segment one image."""
    lab = rgb_to_lab(working_copy(image))
    mask = foreground_mask(lab)
    inner = _erode(_erode(mask))
    if inner.sum() < 16:
        inner = mask
    return Garment(lab, mask, inner, blocks.foreground_box(mask))


def describe(image: Image.Image, weights: dict[str, float] | None = None) -> np.ndarray:
    """The 512-d unit descriptor of one image (`weights` override block weights, for tuning)."""
    garment = prepare(image)
    parts = []
    for name, dim, weight, block in BLOCKS:
        vector = np.asarray(block(garment), dtype=np.float32).reshape(-1)
        assert vector.shape == (dim,), (name, vector.shape)
        norm = float(np.linalg.norm(vector))
        scale = (weights or {}).get(name, weight)
        parts.append(vector * (scale / norm) if norm > 0 else vector)
    return l2_normalise(np.concatenate(parts))[0]


class DescriptorEmbedder:
    """`ImageEmbedder` over the classical descriptor (model_version ``unde-descriptor-v1``)."""

    model_version = MODEL_VERSION
    dim = EMBEDDING_DIM

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = weights

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Describe each image; (n, 512) float32 unit rows."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([describe(image, self.weights) for image in images]).astype(np.float32)
