"""Colour science for the offline tagger: sRGB ↔ CIELAB, CIEDE2000, named colours, dominant colour.

Everything is vectorised numpy. CIELAB uses the D65 white point (sRGB's). Colour names come
from ``unde.vocabulary.COLOURS`` and are matched with CIEDE2000, which tracks perceived
difference far better than CIE76 for dark and saturated colours (navy vs black, burgundy vs
brown) — ``tests/vision/test_colour.py`` checks both round-trips and near-miss cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from unde.vocabulary import COLOURS

FloatArray = NDArray[np.float64]

_RGB_TO_XYZ: Final[FloatArray] = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB: Final[FloatArray] = np.linalg.inv(_RGB_TO_XYZ).astype(np.float64)
_WHITE_D65: Final[FloatArray] = np.array([0.95047, 1.0, 1.08883])
_LEVELS: Final[FloatArray] = np.arange(256, dtype=np.float64) / 255.0
_LINEAR_LUT: Final[FloatArray] = np.where(_LEVELS <= 0.04045, _LEVELS / 12.92, ((_LEVELS + 0.055) / 1.055) ** 2.4)
_EPS: Final[float] = 216 / 24389
_KAPPA: Final[float] = 24389 / 27


def srgb_to_lab(rgb: ArrayLike) -> FloatArray:
    """Convert sRGB values 0..255 of shape (..., 3) to CIELAB (L 0..100, a/b roughly ±128)."""
    arr = np.asarray(rgb)
    if arr.dtype == np.uint8:
        lin = _LINEAR_LUT[arr]
    else:
        c = arr.astype(np.float64) / 255.0
        lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = (lin @ _RGB_TO_XYZ.T) / _WHITE_D65
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1
    )


def lab_to_srgb(lab: ArrayLike) -> FloatArray:
    """Convert CIELAB of shape (..., 3) back to sRGB 0..255 (clipped to the gamut)."""
    lab_arr = np.asarray(lab, dtype=np.float64)
    fy = (lab_arr[..., 0] + 16) / 116
    fx = fy + lab_arr[..., 1] / 500
    fz = fy - lab_arr[..., 2] / 200
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA) * _WHITE_D65
    lin = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    c = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(c * 255.0, 0.0, 255.0)


def delta_e2000(lab1: ArrayLike, lab2: ArrayLike) -> FloatArray:
    """CIEDE2000 colour difference, broadcasting over leading axes of (..., 3) arrays."""
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=np.float64), -1, 0)
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    c_bar7 = ((c1 + c2) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c_bar7 / (c_bar7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dlp, dcp = l2 - l1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dhp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    lbp, cbp = (l1 + l2) / 2, (c1p + c2p) / 2
    hsum = h1p + h2p
    hbp = np.where(
        c1p * c2p == 0,
        hsum,
        np.where(np.abs(h1p - h2p) <= 180, hsum / 2, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2)),
    )
    t = (
        1
        - 0.17 * np.cos(np.radians(hbp - 30))
        + 0.24 * np.cos(np.radians(2 * hbp))
        + 0.32 * np.cos(np.radians(3 * hbp + 6))
        - 0.20 * np.cos(np.radians(4 * hbp - 63))
    )
    sl = 1 + 0.015 * (lbp - 50) ** 2 / np.sqrt(20 + (lbp - 50) ** 2)
    sc = 1 + 0.045 * cbp
    sh = 1 + 0.015 * cbp * t
    cbp7 = cbp**7
    rt = -2 * np.sqrt(cbp7 / (cbp7 + 25.0**7)) * np.sin(np.radians(60 * np.exp(-(((hbp - 275) / 25) ** 2))))
    result: FloatArray = np.sqrt(
        (dlp / sl) ** 2 + (dcp / sc) ** 2 + (dhp / sh) ** 2 + rt * (dcp / sc) * (dhp / sh)
    )
    return result


#: The vocabulary's colours in CIELAB, row i ↔ COLOURS[i].
PALETTE_LAB: Final[FloatArray] = srgb_to_lab(np.array([c.rgb for c in COLOURS], dtype=np.float64))


@dataclass(frozen=True, slots=True)
class ColourMatch:
    """The nearest vocabulary colour to a measured one."""

    name: str
    hex: str
    distance: float  # CIEDE2000 to the vocabulary colour
    probability: float  # softmax-style confidence against the runner-up names


def rgb_hex(rgb: ArrayLike) -> str:
    """``#RRGGBB`` of an sRGB triple (rounded, clipped)."""
    r, g, b = (round(min(255.0, max(0.0, float(v)))) for v in np.asarray(rgb, dtype=np.float64)[:3])
    return f"#{r:02X}{g:02X}{b:02X}"


def name_colour(lab: ArrayLike | None = None, *, rgb: ArrayLike | None = None) -> ColourMatch:
    """Name a colour given in CIELAB (``lab``) or sRGB 0..255 (``rgb=``).

    The hex is the vocabulary colour's (what catalogs store); ``distance`` says how far the
    measured colour was. ``probability`` is a softmax over −ΔE/4 across the vocabulary.
    """
    if (lab is None) == (rgb is None):
        raise ValueError("pass exactly one of lab or rgb")
    lab_arr = srgb_to_lab(rgb) if rgb is not None else np.asarray(lab, dtype=np.float64)
    distances = delta_e2000(lab_arr.reshape(1, 3), PALETTE_LAB)
    best = int(np.argmin(distances))
    weights = np.exp(-(distances - distances[best]) / 4.0)
    colour = COLOURS[best]
    return ColourMatch(colour.name, colour.hex, float(distances[best]), float(weights[best] / weights.sum()))


def skin_mask_lab(lab: FloatArray) -> NDArray[np.bool_]:
    """Pixels whose colour is plausible human skin (CIELAB box covering light to deep tones)."""
    lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    hue = np.degrees(np.arctan2(b, a))
    chroma = np.hypot(a, b)
    mask: NDArray[np.bool_] = (
        (lightness > 25) & (lightness < 92) & (chroma > 12) & (chroma < 50) & (hue > 35) & (hue < 72) & (a > 7)
    )
    return mask


def dominant_colours(lab_pixels: FloatArray, k: int = 3, iterations: int = 8) -> list[tuple[FloatArray, float]]:
    """K-means (deterministic k-means++-like init by farthest point) on (n, 3) Lab pixels.

    Returns ``[(centre_lab, share), ...]`` sorted by share, largest first; empty input → [].
    """
    pixels = np.asarray(lab_pixels, dtype=np.float64).reshape(-1, 3)
    if pixels.shape[0] == 0:
        return []
    if pixels.shape[0] > 1500:
        pixels = pixels[:: pixels.shape[0] // 1500 + 1]
    k = max(1, min(k, pixels.shape[0]))
    centres = [np.median(pixels, axis=0)]
    for _ in range(1, k):
        dist = np.min(np.stack([np.sum((pixels - c) ** 2, axis=1) for c in centres]), axis=0)
        if float(dist.max()) < 25.0:  # everything within ΔE 5 of a centre: no more clusters
            break
        centres.append(pixels[int(np.argmax(dist))])
    centre_arr = np.array(centres)
    assign = np.zeros(pixels.shape[0], dtype=np.int64)
    for _ in range(iterations):
        d = np.sum((pixels[:, None, :] - centre_arr[None, :, :]) ** 2, axis=2)
        assign = np.argmin(d, axis=1)
        for j in range(len(centre_arr)):
            members = pixels[assign == j]
            if len(members):
                centre_arr[j] = np.median(members, axis=0)
    counts = np.bincount(assign, minlength=len(centre_arr)).astype(np.float64)
    order = np.argsort(-counts)
    total = counts.sum()
    return [(centre_arr[j], float(counts[j] / total)) for j in order if counts[j] > 0]
