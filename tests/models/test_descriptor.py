"""The offline descriptor: shape, determinism, segmentation, and that it retrieves."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from unde.models.base import ImageEmbedder
from unde.models.descriptor import BLOCKS, MODEL_VERSION, DescriptorEmbedder, prepare
from unde.models.foreground import foreground_mask, rgb_to_lab


def garment(colour: tuple[int, int, int], background: tuple[int, int, int] = (250, 250, 250),
            size: tuple[int, int] = (300, 400), stripes: bool = False) -> Image.Image:
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.polygon([(w * 0.3, h * 0.1), (w * 0.7, h * 0.1), (w * 0.8, h * 0.9), (w * 0.2, h * 0.9)], fill=colour)
    if stripes:
        for y in range(int(h * 0.1), int(h * 0.9), 16):
            draw.rectangle([w * 0.3, y, w * 0.7, y + 6], fill=(20, 20, 120))
    return image


def test_shape_norm_determinism_and_version() -> None:
    embedder = DescriptorEmbedder()
    assert isinstance(embedder, ImageEmbedder)
    assert embedder.model_version == MODEL_VERSION == "unde-descriptor-v1"
    assert sum(dim for _, dim, _, _ in BLOCKS) == 512
    images = [garment((200, 30, 30)), garment((30, 30, 200), stripes=True),
              Image.new("RGB", (8, 8), (255, 255, 255)), Image.new("L", (64, 40), 128)]
    first, second = embedder.embed(images), embedder.embed(images)
    assert first.shape == (4, 512) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, second)
    assert embedder.embed([]).shape == (0, 512)


def test_foreground_on_a_plain_background_is_the_garment() -> None:
    image = garment((200, 30, 30), background=(235, 235, 240))
    prepared = prepare(image)
    truth = np.asarray(image.resize(prepared.mask.shape[::-1])).astype(int)
    truth_mask = np.abs(truth - [200, 30, 30]).sum(axis=-1) < 60
    iou = (prepared.mask.astype(bool) & truth_mask).sum() / (prepared.mask.astype(bool) | truth_mask).sum()
    assert iou > 0.9


def test_a_colour_filling_a_tight_crop_stays_foreground() -> None:
    # A jeans-like crop: the garment touches the left and right borders, clutter at the bottom.
    pixels = np.full((100, 80, 3), (30, 30, 35), dtype=np.uint8)
    pixels[85:, :] = (150, 90, 160)
    mask = foreground_mask(rgb_to_lab(pixels))
    assert mask[10:80].mean() > 0.95
    assert mask[90:].mean() < 0.1


def test_colour_and_pattern_separate_garments() -> None:
    embedder = DescriptorEmbedder()
    red, red_shifted, blue, red_striped = embedder.embed([
        garment((200, 30, 30)), garment((205, 35, 28), background=(240, 238, 235), size=(360, 420)),
        garment((30, 30, 200)), garment((200, 30, 30), stripes=True)])
    assert red @ red_shifted > red @ blue
    assert red @ red_shifted > red @ red_striped


def test_same_sku_images_are_nearest_on_rendered_catalog() -> None:
    catalog = pytest.importorskip("unde.synthetic.catalog")
    render = pytest.importorskip("unde.synthetic.render")
    skus = catalog.generate_catalog(7, "small").skus[::37][:4]
    images, labels = [], []
    for index, sku in enumerate(skus):
        for rank in (0, 1, 3):  # flat, on-model, rotated flat
            images.append(render.render_product_image(sku, rank))
            labels.append(index)
    vectors = DescriptorEmbedder().embed(images)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    labels_arr = np.array(labels)
    nearest_same = labels_arr[scores.argmax(axis=1)] == labels_arr
    assert nearest_same.mean() >= 0.9
    same = labels_arr[:, None] == labels_arr[None, :]
    np.fill_diagonal(same, False)
    different = labels_arr[:, None] != labels_arr[None, :]
    assert scores[same].mean() > scores[different].mean() + 0.1
