"""Pattern from texture statistics: solid, striped, checked, dotted or printed.

Works on the garment's pixels split into its main colour and a clearly different secondary
colour (CIELAB). With little secondary colour the garment is solid. Otherwise the binary
secondary-colour map is projected onto rows and columns (over a few small rotations, since
flat lays are photographed slightly askew): stripes make one projection swing fully and the
other stay flat, checks make both swing with one connected grid of lines, dots make many
small, similar, round blobs, anything else is a print.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

#: Secondary colour must differ from the main one by this CIE76 distance.
SECONDARY_DELTA_E: Final[float] = 25.0
#: Below this share of secondary-colour pixels the garment is solid.
SOLID_SHARE: Final[float] = 0.06
ANGLES: Final[tuple[float, ...]] = (-8.0, -4.0, 0.0, 4.0, 8.0)


@dataclass(frozen=True, slots=True)
class PatternGuess:
    """The pattern, a confidence 0..1, and the statistics it was read from."""

    pattern: str
    confidence: float
    features: dict[str, float]


def _projection_swing(secondary: NDArray[np.bool_], inside: NDArray[np.bool_]) -> tuple[float, float]:
    """Best (over small rotations) variance ratio of row and column means of the secondary map.

    1.0 = the projection alternates between all-secondary and none (perfect stripes across it).
    """
    best_rows, best_cols = 0.0, 0.0
    sec_img = Image.fromarray((secondary * 255).astype(np.uint8))
    in_img = Image.fromarray((inside * 255).astype(np.uint8))
    for angle in ANGLES:
        s = np.asarray(sec_img.rotate(angle, resample=Image.Resampling.NEAREST)) > 127
        m = np.asarray(in_img.rotate(angle, resample=Image.Resampling.NEAREST)) > 127
        m = ndimage.binary_erosion(m, iterations=2)
        for axis in (1, 0):
            counts = m.sum(axis=axis)
            keep = counts >= max(4, 0.3 * counts.max()) if counts.size else counts > 0
            if keep.sum() < 6:
                continue
            profile = (s & m).sum(axis=axis)[keep] / counts[keep]
            p = float(profile.mean())
            ratio = float(profile.var()) / max(p * (1 - p), 1e-6)
            if axis == 1:
                best_rows = max(best_rows, ratio)
            else:
                best_cols = max(best_cols, ratio)
    return best_rows, best_cols


def _span_fill(mask: NDArray[np.bool_], axis: int) -> NDArray[np.bool_]:
    """Fill each row (axis=1) or column (axis=0) between its first and last set pixel."""
    forward = np.maximum.accumulate(mask, axis=axis)
    backward = np.flip(np.maximum.accumulate(np.flip(mask, axis=axis), axis=axis), axis=axis)
    result: NDArray[np.bool_] = forward & backward
    return result


def garment_extent(lab: NDArray[np.float64], inside: NDArray[np.bool_], main: NDArray[np.float64]) -> NDArray[np.bool_]:
    """The garment's area: the main colour's largest region, filled across rows and columns.

    Secondary colours of a pattern lie between main-colour pixels, so they are kept; other
    garments and background beside it (in a detector crop) are not.
    """
    near = inside & (np.sum((lab - main) ** 2, axis=2) < SECONDARY_DELTA_E**2)
    near = ndimage.binary_closing(near, structure=np.ones((3, 3), dtype=bool))
    labels, count = ndimage.label(near)
    if count == 0:
        return inside
    areas = np.bincount(labels.ravel())[1:]
    keep = np.isin(labels, 1 + np.nonzero(areas >= max(4.0, 0.005 * float(areas.sum())))[0])
    keep = ndimage.binary_dilation(keep, iterations=3)  # bridge full-width stripes/check lines
    hull = _span_fill(keep, 1) & _span_fill(keep, 0)
    result: NDArray[np.bool_] = hull & inside
    return result


def classify_pattern(lab: NDArray[np.float64], inside: NDArray[np.bool_], main: NDArray[np.float64]) -> PatternGuess:
    """Classify the texture of the garment pixels ``inside`` a Lab image given its main colour."""
    inside = garment_extent(lab, inside, main)
    if int(inside.sum()) < 64:
        return PatternGuess("solid", 0.3, {"pixels": float(inside.sum())})
    distance = np.sqrt(np.sum((lab - main) ** 2, axis=2))
    secondary = inside & (distance > SECONDARY_DELTA_E)
    secondary = ndimage.binary_opening(secondary, structure=np.ones((2, 2), dtype=bool))
    share = float(secondary.sum()) / float(inside.sum())
    features: dict[str, float] = {"secondary_share": round(share, 3)}
    if share < SOLID_SHARE:
        return PatternGuess("solid", round(min(0.95, 0.6 + (SOLID_SHARE - share) * 5), 3), features)
    rows, cols = _projection_swing(secondary, inside)
    labels, count = ndimage.label(secondary)
    areas = np.bincount(labels.ravel())[1:] if count else np.zeros(0)
    largest = float(areas.max()) / float(secondary.sum()) if count else 0.0
    small = areas[areas >= 4]
    cv = float(small.std() / small.mean()) if small.size >= 2 else 9.0
    fill = 0.0
    if small.size:
        slices = ndimage.find_objects(labels)
        fills = [
            float(areas[i]) / float((sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start))
            for i, sl in enumerate(slices) if sl is not None and areas[i] >= 4
        ]
        fill = float(np.median(fills)) if fills else 0.0
    features.update({"row_swing": round(rows, 3), "col_swing": round(cols, 3), "blobs": float(small.size),
                     "blob_cv": round(cv, 3), "blob_fill": round(fill, 3), "largest": round(largest, 3)})
    strong, weak = max(rows, cols), min(rows, cols)
    if strong > 0.45 and weak < 0.2:
        return PatternGuess("striped", round(min(0.95, 0.5 + strong - weak), 3), features)
    if weak > 0.3 or (weak > 0.12 and largest > 0.5):
        return PatternGuess("checked", round(min(0.9, 0.5 + largest / 2), 3), features)
    if small.size >= 6 and cv < 0.6 and fill > 0.6:
        return PatternGuess("dotted", round(min(0.9, 0.5 + (0.6 - cv)), 3), features)
    return PatternGuess("printed", 0.5, features)
