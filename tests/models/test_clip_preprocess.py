"""CLIP preprocessing matches a straightforward reference implementation (and transformers')."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unde.models.clip_preprocess import CLIP_MEAN, CLIP_STD, preprocess, resized_size


def reference(image: Image.Image) -> np.ndarray:
    """One image the slow, obvious way: PIL bicubic resize, crop, float64 arithmetic."""
    image = image.convert("RGB")
    w, h = image.size
    size = (224, int(224 * h / w)) if w <= h else (int(224 * w / h), 224)
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - 224) // 2, (size[1] - 224) // 2
    pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float64) / 255.0
    pixels = (pixels - CLIP_MEAN.astype(np.float64)) / CLIP_STD.astype(np.float64)
    return pixels.transpose(2, 0, 1)


def sample_images() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    shapes = [(600, 800), (800, 600), (224, 224), (300, 300), (97, 1000), (1000, 31), (50, 60)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in shapes]
    images.append(Image.fromarray(rng.integers(0, 256, (120, 90), dtype=np.uint8), "L"))
    images.append(Image.fromarray(rng.integers(0, 256, (90, 120, 4), dtype=np.uint8), "RGBA"))
    return images


def test_resized_size_truncates_the_longer_side() -> None:
    assert resized_size(600, 800) == (224, 298)
    assert resized_size(800, 600) == (298, 224)
    assert resized_size(224, 224) == (224, 224)
    assert resized_size(31, 1000) == (224, 7225)


def test_batch_matches_reference_per_image() -> None:
    images = sample_images()
    batch = preprocess(images)
    assert batch.shape == (len(images), 3, 224, 224)
    assert batch.dtype == np.float32
    for row, image in zip(batch, images, strict=True):
        np.testing.assert_allclose(row, reference(image), atol=2e-5)


def test_batch_equals_singles_and_empty_batch() -> None:
    images = sample_images()[:3]
    batch = preprocess(images)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(batch[i], preprocess([image])[0])
    assert preprocess([]).shape == (0, 3, 224, 224)


@pytest.mark.slow  # importing transformers takes tens of seconds
def test_matches_transformers_clip_image_processor() -> None:
    transformers = pytest.importorskip("transformers")
    processor = transformers.CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": 224}, resample=3, do_center_crop=True,
        crop_size={"height": 224, "width": 224}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=CLIP_MEAN.tolist(), image_std=CLIP_STD.tolist(),
        do_convert_rgb=True)
    images = [image.convert("RGB") for image in sample_images()[:5]]
    expected = processor(images=images, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(preprocess(images), expected, atol=1e-4)
