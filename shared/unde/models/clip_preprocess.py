"""Image preprocessing of the ONNX embedders: CLIP's exactly as FashionCLIP was trained
(transformers' CLIPImageProcessor), and the whole-image square fit EfficientNet-Lite0 uses.

Per image: convert to RGB, resize so the shorter side is 224 with PIL bicubic (the longer side
is truncated: ``int(224 * long / short)``), centre-crop 224×224 (offset ``(size - 224) // 2``),
scale to [0, 1], subtract the CLIP mean and divide by the CLIP std per channel. The batch is
returned as one NCHW float32 array; the arithmetic is done once for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

CLIP_SIZE = 224
CLIP_MEAN = np.array((0.48145466, 0.4578275, 0.40821073), dtype=np.float32)
CLIP_STD = np.array((0.26862954, 0.26130258, 0.27577711), dtype=np.float32)

# (x / 255 - mean) / std  ==  x * scale + shift, folded once.
_SCALE = (1.0 / (255.0 * CLIP_STD)).astype(np.float32)
_SHIFT = (-CLIP_MEAN / CLIP_STD).astype(np.float32)


def resized_size(width: int, height: int, size: int = CLIP_SIZE) -> tuple[int, int]:
    """(width, height) after scaling the shorter side to `size` (longer side truncated)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_and_crop(image: Image.Image, size: int = CLIP_SIZE) -> np.ndarray:
    """One image → (size, size, 3) uint8: RGB, shorter side to `size` bicubic, centre crop."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    new_w, new_h = resized_size(image.width, image.height, size)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    # The shorter side is exactly `size` and the longer one is at least `size`: no padding.
    return np.asarray(image, dtype=np.uint8)[top : top + size, left : left + size]


def pad_square(image: Image.Image, size: int = CLIP_SIZE) -> np.ndarray:
    """One image → (size, size, 3) uint8: the whole image, longer side to `size` (bicubic),
    centred on white. An RGBA image (a garment crop whose alpha is its mask) is first
    composited on white, so only the garment's pixels reach the model."""
    if image.mode == "RGBA":
        backdrop = Image.new("RGB", image.size, (255, 255, 255))
        backdrop.paste(image, mask=image.getchannel("A"))
        image = backdrop
    elif image.mode != "RGB":
        image = image.convert("RGB")
    scale = size / max(image.size)
    new_w, new_h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    if (new_w, new_h) != image.size:
        # reducing_gap: a box pre-reduction to ≥ 2× the target first (≈3× faster on 600 px crops)
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=2.0)
    canvas = np.full((size, size, 3), 255, dtype=np.uint8)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(image, dtype=np.uint8)
    return canvas


def normalise_batch(pixels: np.ndarray, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None) -> np.ndarray:
    """(n, h, w, 3) uint8 → (n, 3, h, w) float32 with the mean/std (default CLIP's) applied."""
    scale, shift = _SCALE, _SHIFT
    if mean is not None or std is not None:
        m = np.asarray(CLIP_MEAN if mean is None else mean, dtype=np.float32)
        d = np.asarray(CLIP_STD if std is None else std, dtype=np.float32)
        scale, shift = (1.0 / (255.0 * d)).astype(np.float32), (-m / d).astype(np.float32)
    batch = np.empty((pixels.shape[0], 3, pixels.shape[1], pixels.shape[2]), dtype=np.float32)
    for channel in range(3):
        np.multiply(pixels[..., channel], scale[channel], out=batch[:, channel], casting="unsafe")
        batch[:, channel] += shift[channel]
    return batch


def preprocess(images: Sequence[Image.Image], size: int = CLIP_SIZE, *, mode: str = "clip",
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> np.ndarray:
    """`pixel_values` for a batch of images: (n, 3, size, size) float32.

    ``mode`` ``clip``: resize + centre crop (`resize_and_crop`); ``pad_square``: `pad_square`.
    """
    if not images:
        return np.zeros((0, 3, size, size), dtype=np.float32)
    fit = pad_square if mode == "pad_square" else resize_and_crop
    pixels = np.stack([fit(image, size) for image in images])
    return normalise_batch(pixels, mean, std)
