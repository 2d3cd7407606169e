"""Finding the standing figure in a street photo: background colour model, saliency, body frame.

Classical, weight-free foreground estimation for the offline detector. Each row band's
background is modelled by the colours at the image's left and right edges (street scenes
are wider than a person, and buildings, sky and pavement run across the frame); a pixel is
salient when no edge colour of its band is close to it in CIELAB. The figure's vertical axis
is the column window with the most salient pixels, its vertical extent the first and last
rows with salient pixels around that axis. ``BodyFrame`` then maps body coordinates (head top
v = 0, soles v = 1, axis u = 0, units of figure height) to pixels, so the garment layout can
reason about torso, legs and feet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Width of the left/right strips that model the background, as a fraction of the width.
EDGE_FRACTION: Final[float] = 0.06
#: Rows per background band.
BAND_ROWS: Final[int] = 6
#: Edge-colour samples kept per band.
BAND_SAMPLES: Final[int] = 48
#: CIE76 distance beyond which a pixel is unlike every background sample of its band.
SALIENT_DELTA_E: Final[float] = 14.0


@dataclass(frozen=True, slots=True)
class BodyFrame:
    """Body coordinates → pixels of the working image: x = axis + u·height, y = top + v·height."""

    axis: float
    top: float
    height: float

    def x(self, u: float) -> int:
        """Pixel column of body coordinate ``u``."""
        return round(self.axis + u * self.height)

    def y(self, v: float) -> int:
        """Pixel row of body coordinate ``v``."""
        return round(self.top + v * self.height)

    def window(self, u0: float, u1: float, v0: float, v1: float, shape: tuple[int, int]) -> tuple[slice, slice]:
        """Row and column slices of a body-coordinate rectangle, clipped to ``shape``."""
        h, w = shape
        r0, r1 = min(max(self.y(v0), 0), h), min(max(self.y(v1), 0), h)
        c0, c1 = min(max(self.x(u0), 0), w), min(max(self.x(u1), 0), w)
        return slice(r0, r1), slice(c0, c1)


def saliency(lab: FloatArray, *, seed: int = 0) -> FloatArray:
    """Per-pixel CIE76 distance to the nearest edge colour of the pixel's row band."""
    h, w, _ = lab.shape
    edge = max(2, round(w * EDGE_FRACTION))
    rng = np.random.default_rng(seed)
    out = np.empty((h, w), dtype=np.float64)
    for r0 in range(0, h, BAND_ROWS):
        r1 = min(h, r0 + BAND_ROWS)
        s0, s1 = max(0, r0 - BAND_ROWS // 2), min(h, r1 + BAND_ROWS // 2)
        samples = np.concatenate([lab[s0:s1, :edge].reshape(-1, 3), lab[s0:s1, w - edge:].reshape(-1, 3)])
        if samples.shape[0] > BAND_SAMPLES:
            samples = samples[rng.choice(samples.shape[0], BAND_SAMPLES, replace=False)]
        band = lab[r0:r1].reshape(-1, 3)
        d2 = (
            np.sum(band * band, axis=1)[:, None]
            + np.sum(samples * samples, axis=1)[None, :]
            - 2.0 * (band @ samples.T)
        )
        d = np.sqrt(np.maximum(np.min(d2, axis=1), 0.0))
        out[r0:r1] = d.reshape(r1 - r0, w)
    return out


def foreground_mask(sal: FloatArray) -> BoolArray:
    """Salient pixels, cleaned by a small opening."""
    mask = sal > SALIENT_DELTA_E
    opened: BoolArray = ndimage.binary_opening(mask, structure=np.ones((2, 2), dtype=bool))
    return opened


def symmetry_axis(lab: FloatArray) -> tuple[int, float]:
    """Column about which the figure's rows are most mirror-symmetric in colour.

    A standing person seen from the front is left-right symmetric; a street background of
    buildings and clutter is not. Returns (column, mean mirrored CIE76 difference).
    """
    h, w, _ = lab.shape
    reach = max(2, round(h * 0.12))
    rows = lab[int(h * 0.15): int(h * 0.95): 2]
    lo, hi = max(reach, int(w * 0.2)), min(w - reach, int(w * 0.8))
    if hi <= lo:
        return w // 2, float("inf")
    offsets = np.arange(2, reach + 1, 2)
    best, best_score = w // 2, float("inf")
    for c in range(lo, hi):
        diff = rows[:, c - offsets] - rows[:, c + offsets]
        score = float(np.mean(np.sqrt(np.sum(diff * diff, axis=2))))
        if score < best_score:
            best, best_score = c, score
    return best, best_score


def find_body_frame(lab: FloatArray, fg: BoolArray) -> BodyFrame | None:
    """Locate the figure: its symmetry axis, and the first/last foreground rows around it.

    Returns None when there is no figure-like foreground (blank or uniform images).
    """
    h, w = fg.shape
    if h < 16 or w < 8:
        return None
    axis, _ = symmetry_axis(lab)
    narrow = max(2, round(h * 0.05))
    wide = max(3, round(h * 0.1))
    band_narrow = fg[:, max(0, axis - narrow): axis + narrow + 1].mean(axis=1) > 0.3
    band_wide = fg[:, max(0, axis - wide): axis + wide + 1].mean(axis=1) > 0.2
    open_1d = np.ones(3, dtype=bool)
    heads = np.nonzero(ndimage.binary_opening(band_narrow, structure=open_1d))[0]
    feet = np.nonzero(ndimage.binary_opening(band_wide, structure=open_1d))[0]
    if heads.size == 0 or feet.size == 0:
        return None
    top, bottom = int(heads[0]), int(feet[-1]) + 1
    height = float(bottom - top)
    if height < h * 0.3 or float(band_wide[top:bottom].mean()) < 0.5:
        return None
    return BodyFrame(axis=float(axis), top=float(top), height=height)
