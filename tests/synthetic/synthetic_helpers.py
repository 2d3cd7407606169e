"""Helpers for the synthetic-data tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from unde.synthetic.util import colour_rgb, srgb_to_lab


def centre_patch_colour(img: np.ndarray, bbox: list[int], frac: float = 0.3) -> np.ndarray:
    """Median sRGB of the central ``frac`` of a box."""
    x0, y0, x1, y1 = bbox
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = max(2, (x1 - x0) * frac / 2), max(2, (y1 - y0) * frac / 2)
    patch = img[int(cy - hh) : int(cy + hh), int(cx - hw) : int(cx + hw)].reshape(-1, 3)
    return np.median(patch, axis=0)


def delta_e_to(rgb: np.ndarray, colour_name: str) -> float:
    """CIE76 ΔE between an sRGB value and a vocabulary colour."""
    return float(np.linalg.norm(srgb_to_lab(rgb) - srgb_to_lab(np.array(colour_rgb(colour_name)))))


def background_colour(img: np.ndarray, items: list[dict[str, Any]]) -> np.ndarray:
    """Median colour of the pixels outside every garment box."""
    mask = np.ones(img.shape[:2], dtype=bool)
    for it in items:
        x0, y0, x1, y1 = it["bbox"]
        mask[y0:y1, x0:x1] = False
    return np.median(img[mask], axis=0)


def patch_centres(item: dict[str, Any]) -> list[tuple[float, float]]:
    """Where to sample a garment's colour inside its box, as (fx, fy) fractions of the box.

    Open outerwear shows the top underneath in the middle, so its panels are sampled instead.
    """
    if item["category"] == "outerwear":
        return [(0.22, 0.4), (0.78, 0.4)]
    return [(0.5, 0.5)]


def garment_share(img: np.ndarray, item: dict[str, Any], bg: np.ndarray, frac: float = 0.3) -> float:
    """Best share, over the sample patches, of pixels closer (ΔE) to the garment colour than to ``bg``."""
    x0, y0, x1, y1 = item["bbox"]
    g_lab = srgb_to_lab(np.array(colour_rgb(item["colour"])))
    bg_lab = srgb_to_lab(bg)
    best = 0.0
    for fx, fy in patch_centres(item):
        cx, cy = x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)
        hw, hh = max(2.0, (x1 - x0) * frac / 2), max(2.0, (y1 - y0) * frac / 2)
        patch = img[int(cy - hh) : int(cy + hh), int(cx - hw) : int(cx + hw)].reshape(-1, 3)
        lab = srgb_to_lab(patch)
        d_garment = np.linalg.norm(lab - g_lab, axis=1)
        # Closer to the garment colour than to the background — or simply close to the garment
        # colour, for garments that happen to match the background.
        closer = (d_garment < np.linalg.norm(lab - bg_lab, axis=1)) | (d_garment < 20)
        best = max(best, float(closer.mean()))
    return best
