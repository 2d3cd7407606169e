"""CIELAB conversion, CIEDE2000, colour naming and dominant colours."""

from __future__ import annotations

import numpy as np
import pytest

from unde.vision.colour import (
    delta_e2000,
    dominant_colours,
    lab_to_srgb,
    name_colour,
    rgb_hex,
    skin_mask_lab,
    srgb_to_lab,
)
from unde.vocabulary import COLOURS

# Reference pairs from Sharma, Wu & Dalal (2005), "The CIEDE2000 colour-difference formula".
SHARMA_PAIRS = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0000),
    ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.mark.parametrize(("lab1", "lab2", "expected"), SHARMA_PAIRS)
def test_ciede2000_matches_reference_data(lab1: tuple[float, ...], lab2: tuple[float, ...], expected: float) -> None:
    assert float(delta_e2000(np.array(lab1), np.array(lab2))) == pytest.approx(expected, abs=1e-4)


def test_lab_round_trip_and_known_values() -> None:
    white = srgb_to_lab(np.array([255, 255, 255], dtype=np.uint8))
    assert white == pytest.approx([100.0, 0.0, 0.0], abs=0.01)
    rgb = np.random.default_rng(1).integers(0, 256, size=(50, 3))
    assert np.abs(lab_to_srgb(srgb_to_lab(rgb)) - rgb).max() < 1e-6
    # uint8 (lookup table) and float paths agree.
    as_uint8 = srgb_to_lab(rgb.astype(np.uint8))
    assert np.abs(as_uint8 - srgb_to_lab(rgb.astype(np.float64))).max() < 1e-9


@pytest.mark.parametrize("colour", COLOURS, ids=lambda c: c.name)
def test_every_vocabulary_colour_names_itself(colour: object) -> None:
    match = name_colour(rgb=colour.rgb)  # type: ignore[attr-defined]
    assert match.name == colour.name  # type: ignore[attr-defined]
    assert match.hex == colour.hex  # type: ignore[attr-defined]
    assert match.distance < 1e-6
    # Mild lighting changes (±8 % brightness) keep the name.
    for factor in (0.92, 1.08):
        shaded = np.clip(np.array(colour.rgb) * factor, 0, 255)  # type: ignore[attr-defined]
        assert name_colour(rgb=shaded).name == colour.name  # type: ignore[attr-defined]


def test_name_colour_needs_exactly_one_input() -> None:
    with pytest.raises(ValueError):
        name_colour()
    with pytest.raises(ValueError):
        name_colour(np.zeros(3), rgb=np.zeros(3))


def test_rgb_hex_and_skin() -> None:
    assert rgb_hex((255, 0, 16.4)) == "#FF0010"
    skin = srgb_to_lab(np.array([[224, 172, 138], [110, 70, 48]], dtype=np.uint8))
    assert skin_mask_lab(skin).all()
    not_skin = srgb_to_lab(np.array([[47, 109, 181], [46, 125, 70], [242, 242, 240]], dtype=np.uint8))
    assert not skin_mask_lab(not_skin).any()


def test_dominant_colours_finds_the_larger_share_first() -> None:
    red, navy = srgb_to_lab(np.array([178, 34, 34])), srgb_to_lab(np.array([31, 42, 77]))
    noise = np.random.default_rng(0).normal(0, 1.5, size=(1000, 3))
    pixels = np.concatenate([np.tile(red, (700, 1)), np.tile(navy, (300, 1))]) + noise
    clusters = dominant_colours(pixels, k=3)
    assert name_colour(clusters[0][0]).name == "red"
    assert clusters[0][1] == pytest.approx(0.7, abs=0.02)
    assert name_colour(clusters[1][0]).name == "navy"
    assert dominant_colours(np.empty((0, 3))) == []
