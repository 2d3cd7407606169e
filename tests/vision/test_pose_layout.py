"""Garment regions from pose landmarks + a person mask (no MediaPipe needed: the Person is built
by hand), and the masked crop the offline detector hands on."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unde.providers.garments import box_mask, masked_crop
from unde.vision import person as pm
from unde.vision.colour import srgb_to_lab
from unde.vision.detector import Detection
from unde.vision.pose_layout import PoseLayout
from unde.vision.tagger import tag_garment

SKIN, RED, BLUE, BLACK, GREY = (224, 172, 140), (200, 30, 40), (30, 50, 160), (20, 20, 20), (128, 128, 128)


def _figure(height: int, hips_y: float, visible_legs: bool) -> tuple[np.ndarray, pm.Person]:
    """A 100-px-wide standing figure: skin head, red top, blue trousers, black shoes, on grey."""
    rgb = np.full((height, 100, 3), GREY, dtype=np.uint8)
    mask = np.zeros((height, 100), dtype=bool)
    mask[5:195, 28:72] = True
    rgb[5:32][mask[5:32]] = SKIN
    rgb[32:100][mask[32:100]] = RED
    rgb[100:180][mask[100:180]] = BLUE
    rgb[180:195][mask[180:195]] = BLACK
    rgb[~mask] = GREY
    points = np.zeros((33, 2))
    points[pm.NOSE] = (50, 18)
    points[pm.L_SHOULDER], points[pm.R_SHOULDER] = (68, 40), (32, 40)
    points[pm.L_HIP], points[pm.R_HIP] = (60, hips_y), (40, hips_y)
    points[pm.L_KNEE], points[pm.R_KNEE] = (60, hips_y + 40), (40, hips_y + 40)
    points[pm.L_ANKLE], points[pm.R_ANKLE] = (60, hips_y + 80), (40, hips_y + 80)
    points[pm.L_HEEL], points[pm.R_HEEL] = (60, hips_y + 86), (40, hips_y + 86)
    points[pm.L_FOOT], points[pm.R_FOOT] = (64, hips_y + 90), (36, hips_y + 90)
    visibility = np.full(33, 0.99)
    if not visible_legs:
        visibility[23:] = 0.02
    return rgb[:height], pm.Person(points, visibility, mask[:height])


def _regions(rgb: np.ndarray, person: pm.Person) -> dict[str, tuple[int, int, int, int]]:
    return {r.category: r.bbox for r in PoseLayout(srgb_to_lab(rgb), person).regions()}


def test_full_figure_gives_top_bottom_and_shoes() -> None:
    rgb, person = _figure(200, 100, visible_legs=True)
    found = _regions(rgb, person)
    assert set(found) == {"top", "bottom", "shoes"}
    assert found["top"][1] >= 30 and found["top"][3] <= 106  # no face, stops at the hips
    assert found["shoes"][3] >= 190 and found["bottom"][1] >= 94


def test_a_shirt_between_the_fronts_makes_outerwear_over_a_top() -> None:
    rgb, person = _figure(200, 100, visible_legs=True)
    rgb[34:100, 45:55] = (245, 245, 245)  # a white shirt showing down the centre line
    found = _regions(rgb, person)
    assert {"outerwear", "top", "bottom", "shoes"} <= set(found)
    x0, _, x1, _ = found["top"]
    assert x0 >= 42 and x1 <= 58  # the inner top is the centre strip, not the whole torso


def test_portrait_claims_no_bottoms_or_shoes() -> None:
    rgb, person = _figure(100, 160, visible_legs=False)  # hips predicted below the frame
    assert set(_regions(rgb, person)) == {"top"}


def test_masked_crop_paints_the_background_white_and_the_tagger_reads_the_garment() -> None:
    image = Image.new("RGB", (40, 40), BLUE)  # a busy-coloured backdrop...
    mask = np.zeros((20, 20), dtype=bool)
    mask[4:16, 4:16] = True  # ...around a red garment at half resolution
    pixels = np.asarray(image).copy()
    pixels[8:32, 8:32] = RED
    image = Image.fromarray(pixels)
    box = (0, 0, 40, 40)
    crop = masked_crop(image, box, box_mask(Detection(box, "top", 0.9, mask, 0.5), box))
    assert crop.getpixel((2, 2)) == (255, 255, 255) and crop.getpixel((20, 20)) == RED
    assert tag_garment(crop, "top").color == "red"
    assert masked_crop(image, box, None).getpixel((2, 2)) == BLUE


@pytest.mark.skipif(not pm.available(), reason="MediaPipe not installed")
def test_mediapipe_finds_no_person_in_a_blank_image() -> None:
    assert pm.find_person(np.full((64, 64, 3), 128, dtype=np.uint8)) is None
