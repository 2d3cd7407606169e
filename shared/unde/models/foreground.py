"""Garment-versus-background segmentation for the offline descriptor, from colour alone.

Product shots sit on plain (white, grey, tinted) backgrounds; street crops are tight boxes
around a garment on clutter. Both are handled by a *border colour model*: the frequent
colours of the image border are background candidates, except a colour that dominates the
centre of the image far more than the border — in a tight crop that is the garment itself
touching the box edges. Pixels far (in CIELAB) from every background colour are foreground.
"""

from __future__ import annotations

import numpy as np

BORDER_PX = 3
BG_DELTA_E = 14.0  # CIE76 distance under which a pixel matches a background colour
MAX_BG_COLOURS = 4
MIN_SHARE = 0.08  # a border colour needs this share of the border to count
MIN_FOREGROUND = 0.04

_LINEAR = np.array([c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
                    for c in np.arange(256) / 255.0], dtype=np.float32)
_RGB_TO_XYZ = (np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]], dtype=np.float32)
               / np.array([[0.95047], [1.0], [1.08883]], dtype=np.float32))


def rgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB → (..., 3) float32 CIELAB (D65)."""
    xyz = _LINEAR[pixels] @ _RGB_TO_XYZ.T
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1).astype(np.float32)


def _border(lab: np.ndarray) -> np.ndarray:
    b = BORDER_PX
    return np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3),
                           lab[b:-b, :b].reshape(-1, 3), lab[b:-b, -b:].reshape(-1, 3)])


def border_colours(border: np.ndarray) -> np.ndarray:
    """Up to MAX_BG_COLOURS frequent colours of the border pixels (mean Lab of coarse cells)."""
    cells = np.floor(border / np.array([12.0, 12.0, 12.0], dtype=np.float32)).astype(np.int32)
    keys = (cells[:, 0] + 64) * 65536 + (cells[:, 1] + 128) * 256 + (cells[:, 2] + 128)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.argsort(-counts)
    colours = []
    for index in order[:MAX_BG_COLOURS]:
        if counts[index] < MIN_SHARE * len(border):
            break
        colours.append(border[inverse == index].mean(axis=0))
    return np.array(colours, dtype=np.float32).reshape(-1, 3)


def _near(lab: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(..., k) bool: pixel within BG_DELTA_E of each colour."""
    diff = lab[..., None, :] - colours
    return np.einsum("...kc,...kc->...k", diff, diff) < BG_DELTA_E**2


def foreground_mask(lab: np.ndarray) -> np.ndarray:
    """(h, w) float32 in {0, 1}: 1 where the pixel belongs to the garment."""
    h, w = lab.shape[:2]
    colours = border_colours(_border(lab))
    if len(colours) == 0:
        return np.ones((h, w), dtype=np.float32)
    centre = lab[h // 4 : h - h // 4, w // 4 : w - w // 4].reshape(-1, 3)
    border_share = _near(_border(lab), colours).mean(axis=0)
    centre_share = _near(centre, colours).mean(axis=0)
    # A colour filling the centre much more than the border is the garment, not the backdrop.
    background = colours[~((centre_share > 0.3) & (centre_share > 0.8 * border_share))]
    if len(background) == 0:
        return np.ones((h, w), dtype=np.float32)
    mask = _majority(np.logical_not(_near(lab, background).any(axis=-1)).astype(np.float32))
    if mask.mean() < MIN_FOREGROUND:
        return np.ones((h, w), dtype=np.float32)
    return mask


def _majority(mask: np.ndarray) -> np.ndarray:
    """3×3 majority vote: removes speckle (JPEG noise, thin seams) from the mask."""
    padded = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    total = np.add.reduce([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    return np.asarray(total >= 5, dtype=np.float32)
