"""Garment regions from a real person model: MediaPipe Pose landmarks + the person mask.

The landmarks say where the body parts are even when they are out of frame (a portrait's hips
are predicted below the image with low visibility), so a portrait yields only its upper-body
garment: bottoms need visible hips inside the photo and visible knees, shoes visible ankles or
toes inside the photo. Each region is the person mask's pixels inside a landmark-derived window,
minus skin (the face's colour, sampled around the nose); its box is the mask's extent.

- upper body: shoulders − 0.15 torso … hips + 0.05 torso → ``top``; ``outerwear`` (plus the
  ``top`` under it) when a colour fills 15 % of the torso's centre line and none of its sides;
- one colour from torso to thighs → ``dress`` down to the last row the colour holds;
- lower body: hips … ankles → ``bottom``;
- feet: around ankle, heel and toe landmarks → ``shoes``.

Confidence = the mean visibility of the landmarks a region rests on × the share of its window
the mask covers (capped), so an extrapolated body part never reaches a high score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from unde.vision.colour import dominant_colours, skin_mask_lab
from unde.vision.person import (
    L_ANKLE,
    L_FOOT,
    L_HEEL,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    NOSE,
    R_ANKLE,
    R_FOOT,
    R_HEEL,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    Person,
)

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: CIE76 distance under which two zones are the same garment's colour.
SAME_DELTA_E: Final[float] = 18.0
#: CIE76 distance to the face colour under which a pixel is skin.
SKIN_DELTA_E: Final[float] = 14.0
#: A region needs this share of the person's pixels to count.
MIN_SHARE: Final[float] = 0.01


@dataclass(frozen=True, slots=True)
class PoseRegion:
    """One garment in the analysed array's pixels."""

    category: str
    bbox: tuple[int, int, int, int]
    confidence: float
    mask: BoolArray


def _box(mask: BoolArray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    x0, x1 = np.percentile(xs, [0.5, 99.5])
    y0, y1 = np.percentile(ys, [0.5, 99.5])
    return int(x0), int(y0), int(x1) + 1, int(y1) + 1


def _main_colour(lab: FloatArray, mask: BoolArray) -> FloatArray | None:
    pixels = lab[mask]
    if pixels.shape[0] < 8:
        return None
    clusters = dominant_colours(pixels, k=3, iterations=5)
    return clusters[0][0] if clusters else None


def _close(a: FloatArray | None, b: FloatArray | None, tol: float = SAME_DELTA_E) -> bool:
    return a is not None and b is not None and float(np.linalg.norm(a - b)) < tol


def _inner_colour(lab: FloatArray, centre: BoolArray, sides: BoolArray) -> FloatArray | None:
    """A colour covering ≥ 15 % of the torso's centre line and none of its sides' main colours:
    a top showing between the fronts of an open jacket. None when the torso is one garment."""
    if centre.sum() < 8 or sides.sum() < 8:
        return None
    side_colours = [c for c, share in dominant_colours(lab[sides], k=3, iterations=5) if share >= 0.1]
    for colour, share in dominant_colours(lab[centre], k=3, iterations=5):
        if share >= 0.15 and not any(_close(colour, other) for other in side_colours):
            return colour
    return None


class PoseLayout:
    """The landmark geometry of one person over a Lab array of the same size as its mask."""

    def __init__(self, lab: FloatArray, person: Person) -> None:
        self.lab, self.person = lab, person
        self.h, self.w = person.mask.shape
        p = person.points
        self.shoulder_y = person.y(L_SHOULDER, R_SHOULDER)
        self.hip_y = person.y(L_HIP, R_HIP)
        self.axis = float(np.mean(p[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP], 0]))
        self.torso = max(8.0, self.hip_y - self.shoulder_y)
        self.width = max(8.0, abs(float(p[L_SHOULDER, 0] - p[R_SHOULDER, 0])))
        self.rows = np.arange(self.h)[:, None]
        self.cols = np.arange(self.w)[None, :]
        self.skin = self._skin()
        self.body = person.mask & ~self.skin

    def _skin(self) -> BoolArray:
        nx, ny = self.person.points[NOSE]
        r = max(2, round(0.12 * self.width))
        y0, y1 = max(0, round(ny - r)), min(self.h, round(ny + r))
        x0, x1 = max(0, round(nx - r)), min(self.w, round(nx + r))
        face = self.lab[y0:y1, x0:x1][self.person.mask[y0:y1, x0:x1]] if y1 > y0 and x1 > x0 else np.empty((0, 3))
        face = face[skin_mask_lab(face)] if face.size else face
        if face.shape[0] < 8:
            return skin_mask_lab(self.lab)
        colour = np.median(face, axis=0)
        skin: BoolArray = np.sum((self.lab - colour) ** 2, axis=-1) < SKIN_DELTA_E**2
        return skin

    def window(self, y0: float, y1: float, x0: float = -1e9, x1: float = 1e9) -> BoolArray:
        """Pixels with y0 ≤ row < y1 and x0 ≤ column < x1 (clipped)."""
        inside: BoolArray = (self.rows >= y0) & (self.rows < y1) & (self.cols >= x0) & (self.cols < x1)
        return inside

    def coverage(self, region: BoolArray, window: BoolArray) -> float:
        return float(region.sum()) / max(1.0, float(window.sum()))

    def regions(self) -> list[PoseRegion]:
        """The garments of this person, upper body first."""
        person, found = self.person, []
        min_pixels = max(16, int(MIN_SHARE * person.mask.sum()))
        top_y = max(self.shoulder_y - 0.15 * self.torso, (person.points[NOSE, 1] + self.shoulder_y) / 2)
        upper_win = self.window(top_y, self.hip_y + 0.05 * self.torso)
        upper = self.body & upper_win
        shoulders_vis = float(np.mean(person.visibility[[L_SHOULDER, R_SHOULDER]]))
        chest = self.window(top_y, self.shoulder_y + 0.4 * self.torso)
        centre = upper & chest & self.window(-1, 1e9, self.axis - 0.1 * self.width, self.axis + 0.1 * self.width)
        off_axis = np.abs(self.cols - self.axis)
        side_band = (off_axis > 0.28 * self.width) & (off_axis < 0.45 * self.width)
        sides = upper & chest & side_band
        centre_colour = _inner_colour(self.lab, centre, sides)
        legs_seen = (person.seen(L_HIP, R_HIP) and person.seen(L_KNEE, R_KNEE))
        thigh_win = self.window(self.hip_y + 0.1 * self.torso, person.y(L_KNEE, R_KNEE)) if legs_seen else None
        thigh_colour = _main_colour(self.lab, self.body & thigh_win) if thigh_win is not None else None
        gap_colour = None
        if thigh_win is not None:
            gap = thigh_win & self.window(-1, 1e9, self.axis - 0.04 * self.width, self.axis + 0.04 * self.width)
            gap_colour = _main_colour(self.lab, self.body & gap)
        upper_colour = _main_colour(self.lab, upper & chest)
        dress = legs_seen and _close(upper_colour, thigh_colour) and _close(upper_colour, gap_colour)
        outer = not dress and centre_colour is not None and self.coverage(sides, chest & side_band) > 0.5

        def add(category: str, mask: BoolArray, window: BoolArray, visibility: float) -> None:
            box = _box(mask) if mask.sum() >= min_pixels else None
            if box is not None:
                score = visibility * min(1.0, 0.4 + self.coverage(mask, window))
                found.append(PoseRegion(category, box, round(max(0.05, min(0.99, score)), 3), mask))

        if dress:
            assert upper_colour is not None
            near = np.sum((self.lab - upper_colour) ** 2, axis=-1) < (1.5 * SAME_DELTA_E) ** 2
            rows = np.nonzero((self.body & near & self.window(self.hip_y, 1e9)).sum(axis=1) > 0.1 * self.width)[0]
            hem = float(rows.max()) + 1 if rows.size else self.hip_y
            win = self.window(top_y, hem)
            add("dress", self.body & win & (near | upper_win), win,
                float(np.mean(person.visibility[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, L_KNEE, R_KNEE]])))
        elif outer:
            add("outerwear", upper, upper_win, shoulders_vis)
            assert centre_colour is not None
            near = np.sum((self.lab - centre_colour) ** 2, axis=-1) < SAME_DELTA_E**2
            inner_band = self.window(-1, 1e9, self.axis - 0.3 * self.width, self.axis + 0.3 * self.width)
            add("top", upper & near & inner_band, upper_win & inner_band, 0.8 * shoulders_vis)
        else:
            add("top", upper, upper_win, shoulders_vis)
        ankles = [i for i in (L_ANKLE, R_ANKLE, L_HEEL, R_HEEL, L_FOOT, R_FOOT) if person.seen(i)]
        if legs_seen and not dress:
            bottom_end = person.y(*ankles) if ankles else self.h
            win = self.window(self.hip_y - 0.05 * self.torso, bottom_end)
            add("bottom", self.body & win, win, float(np.mean(person.visibility[[L_HIP, R_HIP, L_KNEE, R_KNEE]])))
        if ankles:
            xs, ys = person.points[ankles, 0], person.points[ankles, 1]
            win = self.window(float(ys.min()) - 0.08 * self.torso, float(ys.max()) + 0.12 * self.torso,
                              float(xs.min()) - 0.3 * self.width, float(xs.max()) + 0.3 * self.width)
            add("shoes", self.body & win, win, float(np.mean(person.visibility[ankles])))
        return found
