"""Splitting a located figure into garments with body-layout rules and CIELAB colour regions.

Zones in body coordinates (see ``segmentation.BodyFrame``) are sampled for their main colours:
the torso's front centre and its sides, the thighs, the gap between the thighs, the feet and
the space beside each hand. Rules over those colour signatures decide which garments are
worn — sides unlike the front centre → outerwear open over a top; one colour from torso
to thighs including the gap between the legs → dress; non-skin thighs → a bottom; non-skin
feet → shoes; a compact non-background blob beside a hand → bag. Each garment's box is the
connected region of its colours grown from its seed zone inside a category-specific window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from unde.vision.colour import dominant_colours, skin_mask_lab
from unde.vision.segmentation import BodyFrame

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: CIE76 tolerance when two zone colours are "the same garment" (shading moves L by ~10).
MATCH_DELTA_E: Final[float] = 20.0
#: CIE76 tolerance when growing a garment region from its colours.
GROW_DELTA_E: Final[float] = 18.0
#: Share of a zone's pixels within this distance of the skin colour to call the zone skin.
SKIN_DELTA_E: Final[float] = 14.0

#: Body-coordinate windows (u0, u1, v0, v1) a garment's region may occupy.
WINDOWS: Final[dict[str, tuple[float, float, float, float]]] = {
    "top": (-0.30, 0.30, 0.10, 0.62),
    "top_under": (-0.15, 0.15, 0.10, 0.62),
    "outerwear": (-0.32, 0.32, 0.10, 0.92),
    "dress": (-0.32, 0.32, 0.10, 0.99),
    "bottom": (-0.20, 0.20, 0.35, 1.00),
    "shoes": (-0.17, 0.17, 0.76, 1.03),
}


@dataclass(frozen=True, slots=True)
class Signature:
    """Main colours of a zone (Lab centres with pixel shares) and how much of it was foreground."""

    colours: tuple[tuple[FloatArray, float], ...]
    foreground: float
    skin: float
    n: int

    @property
    def main(self) -> list[FloatArray]:
        """Colours covering at least a fifth of the zone."""
        return [c for c, share in self.colours if share >= 0.2] or [c for c, _ in self.colours[:1]]

    @property
    def empty(self) -> bool:
        """True when the zone had no usable pixels."""
        return self.n == 0


@dataclass(frozen=True, slots=True)
class GarmentRegion:
    """A garment found by the layout rules (pixel box in the working image)."""

    category: str
    bbox: tuple[int, int, int, int]
    confidence: float
    mask: BoolArray


class FigureAnalysis:
    """Zone sampling and region growing over one working-resolution Lab image."""

    def __init__(self, lab: FloatArray, fg: BoolArray, frame: BodyFrame) -> None:
        self.lab = lab
        self.fg = fg
        self.frame = frame
        self.shape: tuple[int, int] = (lab.shape[0], lab.shape[1])
        face = self._pixels(-0.02, 0.02, 0.09, 0.15, symmetric=False, foreground_only=False)
        face_skin = face[skin_mask_lab(face)] if face.size else face
        self.skin: FloatArray | None = (
            np.median(face_skin, axis=0) if face_skin.shape[0] >= max(4, face.shape[0] // 3) else None
        )

    def _pixels(self, u0: float, u1: float, v0: float, v1: float, *, symmetric: bool,
                foreground_only: bool) -> FloatArray:
        spans = [(u0, u1), (-u1, -u0)] if symmetric else [(u0, u1)]
        chunks = []
        for a, b in spans:
            rows, cols = self.frame.window(a, b, v0, v1, self.shape)
            block = self.lab[rows, cols].reshape(-1, 3)
            if foreground_only:
                block = block[self.fg[rows, cols].reshape(-1)]
            chunks.append(block)
        return np.concatenate(chunks) if chunks else np.empty((0, 3))

    def is_skin(self, pixels: FloatArray) -> BoolArray:
        """Pixels close to this figure's skin colour (generic skin box when no face was found)."""
        if self.skin is None:
            return skin_mask_lab(pixels)
        result: BoolArray = np.sum((pixels - self.skin) ** 2, axis=-1) < SKIN_DELTA_E**2
        return result

    def signature(self, u0: float, u1: float, v0: float, v1: float, *, symmetric: bool = True,
                  foreground_only: bool = False) -> Signature:
        """Main colours of a zone (mirrored to both sides of the axis when ``symmetric``)."""
        everything = self._pixels(u0, u1, v0, v1, symmetric=symmetric, foreground_only=False)
        if everything.shape[0] == 0:
            return Signature((), 0.0, 0.0, 0)
        spans = [(u0, u1), (-u1, -u0)] if symmetric else [(u0, u1)]
        fg_count = 0
        for a, b in spans:
            rows, cols = self.frame.window(a, b, v0, v1, self.shape)
            fg_count += int(self.fg[rows, cols].sum())
        pixels = self._pixels(u0, u1, v0, v1, symmetric=symmetric, foreground_only=True) if foreground_only \
            else everything
        if pixels.shape[0] == 0:
            return Signature((), fg_count / everything.shape[0], 0.0, 0)
        skin_px = self.is_skin(pixels)
        skin = float(skin_px.mean())
        if skin < 0.85:  # describe the garment, not the skin showing around it
            pixels = pixels[~skin_px]
        colours = tuple(dominant_colours(pixels, k=3, iterations=5))
        return Signature(colours, fg_count / everything.shape[0], skin, int(pixels.shape[0]))

    def grow(self, colours: list[FloatArray], seed_box: tuple[float, float, float, float],
             window: tuple[float, float, float, float], *, exclude_skin: bool = True,
             taken: BoolArray | None = None, mirror: bool = True) -> BoolArray:
        """Pixels of ``colours`` inside ``window`` connected to the seed zone (body coordinates).

        Pixels already in ``taken`` (garments grown earlier) are skipped; skin-coloured pixels
        too, unless the garment itself is skin-coloured.
        """
        h, w = self.shape
        if not colours:
            return np.zeros((h, w), dtype=bool)
        rows, cols = self.frame.window(*window, self.shape)
        block = self.lab[rows, cols]
        centres = np.array(colours)
        d2 = np.min(np.sum((block[:, :, None, :] - centres[None, None, :, :]) ** 2, axis=3), axis=2)
        near = d2 < GROW_DELTA_E**2
        if exclude_skin and self.skin is not None and all(
            float(np.sum((c - self.skin) ** 2)) > (1.5 * SKIN_DELTA_E) ** 2 for c in colours
        ):
            near &= ~self.is_skin(block)
        if taken is not None:
            near &= ~taken[rows, cols]
        near = ndimage.binary_closing(near, structure=np.ones((3, 3), dtype=bool))
        labels, count = ndimage.label(near)
        full = np.zeros((h, w), dtype=bool)
        if count == 0:
            return full
        seed = np.zeros((h, w), dtype=bool)
        spans = [(seed_box[0], seed_box[1])] + ([(-seed_box[1], -seed_box[0])] if mirror else [])
        for a, b in spans:
            s_rows, s_cols = self.frame.window(a, b, seed_box[2], seed_box[3], self.shape)
            seed[s_rows, s_cols] = True
        seed_labels = np.unique(labels[seed[rows, cols] & near])
        seed_labels = seed_labels[seed_labels > 0]
        if seed_labels.size == 0:
            return full
        full[rows, cols] = np.isin(labels, seed_labels)
        return full


def same_garment(a: Signature, b: Signature, tol: float = MATCH_DELTA_E) -> bool:
    """True when each zone's dominant colour is close to one of the other's main colours."""
    if a.empty or b.empty:
        return False

    def covered(x: Signature, y: Signature) -> bool:
        top = x.colours[0][0]
        return any(float(np.sqrt(np.sum((top - c) ** 2))) < tol for c in y.main)

    return covered(a, b) and covered(b, a)


def mask_bbox(mask: BoolArray, min_pixels: int) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of a mask, trimmed of 1 % stragglers per side."""
    ys, xs = np.nonzero(mask)
    if xs.size < min_pixels:
        return None
    x0, x1 = np.percentile(xs, [0.5, 99.5])
    y0, y1 = np.percentile(ys, [0.5, 99.5])
    return int(x0), int(y0), int(x1) + 1, int(y1) + 1
