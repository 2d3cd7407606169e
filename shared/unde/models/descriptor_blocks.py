"""The feature blocks of the offline garment descriptor, each a small fixed-size vector.

Every block is computed over the garment's foreground (`unde.models.foreground`) on a
~128-pixel image and returned unnormalised; `unde.models.descriptor` normalises, weights and
concatenates them. Sizes add up to exactly 512.
"""

from __future__ import annotations

import numpy as np

# --- colour -------------------------------------------------------------------------------
L_NODES, AB_NODES, AB_RANGE = 6, 6, 64.0
COLOUR_HIST_DIM = L_NODES * AB_NODES * AB_NODES  # 216
LAYOUT_GRID = 4
COLOUR_LAYOUT_DIM = LAYOUT_GRID * LAYOUT_GRID * 3  # 48
CONTRAST_BINS = 14


def _soft_bins(values: np.ndarray, lo: float, hi: float, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation weights onto `nodes` evenly spaced nodes: (lower index, upper weight)."""
    position = (np.clip(values, lo, hi) - lo) / (hi - lo) * (nodes - 1)
    lower = np.minimum(np.floor(position).astype(np.int64), nodes - 2)
    return lower, (position - lower).astype(np.float32)


def colour_histogram(lab: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Trilinear soft histogram of the foreground in CIELAB (6×6×6 nodes), square-rooted."""
    pixels, w = lab.reshape(-1, 3), weight.reshape(-1)
    keep = w > 0
    pixels, w = pixels[keep], w[keep]
    li, lf = _soft_bins(pixels[:, 0], 0.0, 100.0, L_NODES)
    ai, af = _soft_bins(pixels[:, 1], -AB_RANGE, AB_RANGE, AB_NODES)
    bi, bf = _soft_bins(pixels[:, 2], -AB_RANGE, AB_RANGE, AB_NODES)
    hist = np.zeros(COLOUR_HIST_DIM, dtype=np.float64)
    for dl, wl in ((0, 1 - lf), (1, lf)):
        for da, wa in ((0, 1 - af), (1, af)):
            for db, wb in ((0, 1 - bf), (1, bf)):
                index = ((li + dl) * AB_NODES + ai + da) * AB_NODES + bi + db
                hist += np.bincount(index, weights=w * wl * wa * wb, minlength=COLOUR_HIST_DIM)
    return np.sqrt(hist / max(hist.sum(), 1e-9)).astype(np.float32)


def foreground_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the foreground (the whole image if the mask is empty)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0, mask.shape[0], 0, mask.shape[1]
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _grid_means(values: np.ndarray, weight: np.ndarray, grid: int) -> np.ndarray:
    """Weighted mean of `values` (h, w, c) in each cell of a grid × grid partition."""
    h, w = weight.shape
    rows = np.minimum(np.arange(h) * grid // max(h, 1), grid - 1)
    cols = np.minimum(np.arange(w) * grid // max(w, 1), grid - 1)
    cell = (rows[:, None] * grid + cols[None, :]).reshape(-1)
    totals = np.bincount(cell, weights=weight.reshape(-1), minlength=grid * grid)
    channels = [np.bincount(cell, weights=(values[..., c] * weight).reshape(-1), minlength=grid * grid)
                for c in range(values.shape[-1])]
    return np.stack(channels, axis=1) / np.maximum(totals, 1e-6)[:, None]


def colour_layout(lab: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Mean Lab of the foreground in a 4×4 grid over its bounding box (scaled to ~unit range)."""
    y0, y1, x0, x1 = box
    means = _grid_means(lab[y0:y1, x0:x1], mask[y0:y1, x0:x1], LAYOUT_GRID)
    return (means / np.array([100.0, 64.0, 64.0])).reshape(-1).astype(np.float32)


def _binned(values: np.ndarray, edges: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted histogram over `edges` (faster than np.histogram for small inputs)."""
    index = np.searchsorted(edges, values.reshape(-1), side="right") - 1
    index = np.clip(index, 0, len(edges) - 2)
    return np.bincount(index, weights=weights.reshape(-1), minlength=len(edges) - 1)


_CONTRAST_EDGES_SQ = np.array([0, 2, 4, 6, 9, 12, 16, 20, 25, 30, 40, 50, 65, 80, 1e9], dtype=np.float32) ** 2


def colour_contrast(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Histogram of ΔE between neighbouring foreground pixels (pattern contrast: solid vs print)."""
    dx = lab[:, 1:] - lab[:, :-1]
    dy = lab[1:, :] - lab[:-1, :]
    hist = (_binned(np.einsum("ijc,ijc->ij", dx, dx), _CONTRAST_EDGES_SQ, mask[:, 1:] * mask[:, :-1])
            + _binned(np.einsum("ijc,ijc->ij", dy, dy), _CONTRAST_EDGES_SQ, mask[1:, :] * mask[:-1, :]))
    return np.sqrt(hist / max(hist.sum(), 1e-9)).astype(np.float32)


# --- texture ------------------------------------------------------------------------------
ORIENT_BINS, MAGNITUDE_BINS = 12, 8
GRADIENT_DIM = ORIENT_BINS + MAGNITUDE_BINS  # 20
LBP_DIM = 20
SPECTRUM_RINGS, SPECTRUM_WEDGES, SPECTRUM_SIZE = 8, 8, 64
SPECTRUM_DIM = SPECTRUM_RINGS * SPECTRUM_WEDGES  # 64


_MAGNITUDE_EDGES = np.array([0, 4, 8, 16, 32, 64, 128, 256, 1e9], dtype=np.float32)


def gradients(lightness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel magnitude and unsigned orientation (0..π) of an (h, w) image (edge-padded)."""
    p = np.pad(lightness, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)


def gradient_histogram(lightness: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Magnitude-weighted orientation histogram + magnitude histogram inside the garment."""
    magnitude, angle = gradients(lightness)
    weight = magnitude * inner
    bins = np.minimum((angle / np.pi * ORIENT_BINS).astype(np.int64), ORIENT_BINS - 1)
    orient = np.bincount(bins.reshape(-1), weights=weight.reshape(-1), minlength=ORIENT_BINS)
    mags = _binned(magnitude, _MAGNITUDE_EDGES, inner)
    orient = np.sqrt(orient / max(orient.sum(), 1e-9))
    mags = np.sqrt(mags / max(mags.sum(), 1e-9))
    return np.concatenate([orient, mags]).astype(np.float32)


def _lbp_counts(lightness: np.ndarray, inner: np.ndarray, radius: int, threshold: float) -> np.ndarray:
    """Rotation-invariant uniform LBP (8 neighbours) histogram: 9 uniform codes + 1 other."""
    r = radius
    p = np.pad(lightness, r, mode="edge")
    h, w = lightness.shape
    offsets = [(-r, 0), (-r, r), (0, r), (r, r), (r, 0), (r, -r), (0, -r), (-r, -r)]
    bits = np.stack([p[r + dy : r + dy + h, r + dx : r + dx + w] > lightness + threshold
                     for dy, dx in offsets]).astype(np.int8)
    ones = bits.sum(axis=0)
    transitions = np.abs(np.diff(np.concatenate([bits, bits[:1]]), axis=0)).sum(axis=0)
    code = np.where(transitions <= 2, ones, 9)
    hist = np.bincount(code.reshape(-1), weights=inner.reshape(-1), minlength=10)
    return np.sqrt(hist / max(hist.sum(), 1e-9))


def lbp_histogram(lightness: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """LBP histograms at radius 1 and 2 (contrast threshold 2 L* units against JPEG noise)."""
    return np.concatenate([_lbp_counts(lightness, inner, 1, 2.0),
                           _lbp_counts(lightness, inner, 2, 2.0)]).astype(np.float32)


def _spectrum_bins() -> tuple[np.ndarray, np.ndarray]:
    freq = np.fft.fftfreq(SPECTRUM_SIZE)
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    radius = np.hypot(fx, fy)
    ring = np.floor(np.log2(np.maximum(radius, 1e-9) * SPECTRUM_SIZE) / 5.0 * SPECTRUM_RINGS)
    ring = np.clip(ring, 0, SPECTRUM_RINGS - 1).astype(np.int64)
    wedge = np.minimum((np.mod(np.arctan2(fy, fx), np.pi) / np.pi * SPECTRUM_WEDGES).astype(np.int64),
                       SPECTRUM_WEDGES - 1)
    index = ring * SPECTRUM_WEDGES + wedge
    valid = radius * SPECTRUM_SIZE >= 1.0  # drop DC
    return index.reshape(-1), valid.reshape(-1).astype(np.float64)


_SPECTRUM_INDEX, _SPECTRUM_VALID = _spectrum_bins()
_HANN = np.outer(np.hanning(SPECTRUM_SIZE), np.hanning(SPECTRUM_SIZE))


def stripe_spectrum(lightness_crop: np.ndarray, mask_crop: np.ndarray) -> np.ndarray:
    """Log-radial × orientation energy of the Fourier spectrum of the garment (stripes, checks)."""
    filled = np.where(mask_crop > 0, lightness_crop,
                      (lightness_crop * mask_crop).sum() / max(mask_crop.sum(), 1.0))
    filled = filled - filled.mean()
    ys = np.linspace(0, filled.shape[0] - 1, SPECTRUM_SIZE).astype(np.int64)
    xs = np.linspace(0, filled.shape[1] - 1, SPECTRUM_SIZE).astype(np.int64)
    power = np.abs(np.fft.fft2(filled[np.ix_(ys, xs)] * _HANN)) ** 2
    energy = np.bincount(_SPECTRUM_INDEX, weights=power.reshape(-1) * _SPECTRUM_VALID,
                         minlength=SPECTRUM_DIM)
    return np.sqrt(energy / max(energy.sum(), 1e-9)).astype(np.float32)


# --- shape --------------------------------------------------------------------------------
SHAPE_GRID = 11
SHAPE_GRID_DIM = SHAPE_GRID * SHAPE_GRID  # 121
SHAPE_MOMENTS_DIM = 9


def silhouette_grid(mask_crop: np.ndarray) -> np.ndarray:
    """Occupancy of the garment's bounding box on an 11×11 grid (the silhouette)."""
    h, w = mask_crop.shape
    rows = np.minimum(np.arange(h) * SHAPE_GRID // h, SHAPE_GRID - 1)
    cols = np.minimum(np.arange(w) * SHAPE_GRID // w, SHAPE_GRID - 1)
    cell = (rows[:, None] * SHAPE_GRID + cols[None, :]).reshape(-1)
    area = np.bincount(cell, minlength=SHAPE_GRID_DIM)
    filled = np.bincount(cell, weights=mask_crop.reshape(-1), minlength=SHAPE_GRID_DIM)
    return (filled / np.maximum(area, 1)).astype(np.float32)


def shape_moments(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Aspect ratio, fill ratio and the 7 Hu moments (log-scaled) of the foreground mask."""
    y0, y1, x0, x1 = box
    aspect = np.log((y1 - y0) / max(x1 - x0, 1))
    fill = mask[y0:y1, x0:x1].mean()
    ys, xs = np.nonzero(mask)
    if len(ys) < 3:
        return np.zeros(SHAPE_MOMENTS_DIM, dtype=np.float32)
    y, x = ys - ys.mean(), xs - xs.mean()
    m00 = float(len(ys))
    x2, y2 = x * x, y * y
    powers = {(2, 0): x2, (0, 2): y2, (1, 1): x * y, (3, 0): x2 * x, (0, 3): y2 * y,
              (2, 1): x2 * y, (1, 2): x * y2}

    def eta(p: int, q: int) -> float:
        return float(powers[(p, q)].sum() / m00 ** (1 + (p + q) / 2))

    n20, n02, n11 = eta(2, 0), eta(0, 2), eta(1, 1)
    n30, n03, n21, n12 = eta(3, 0), eta(0, 3), eta(2, 1), eta(1, 2)
    hu = np.array([
        n20 + n02,
        (n20 - n02) ** 2 + 4 * n11**2,
        (n30 - 3 * n12) ** 2 + (3 * n21 - n03) ** 2,
        (n30 + n12) ** 2 + (n21 + n03) ** 2,
        (n30 - 3 * n12) * (n30 + n12) * ((n30 + n12) ** 2 - 3 * (n21 + n03) ** 2)
        + (3 * n21 - n03) * (n21 + n03) * (3 * (n30 + n12) ** 2 - (n21 + n03) ** 2),
        (n20 - n02) * ((n30 + n12) ** 2 - (n21 + n03) ** 2) + 4 * n11 * (n30 + n12) * (n21 + n03),
        (3 * n21 - n03) * (n30 + n12) * ((n30 + n12) ** 2 - 3 * (n21 + n03) ** 2)
        - (n30 - 3 * n12) * (n21 + n03) * (3 * (n30 + n12) ** 2 - (n21 + n03) ** 2),
    ])
    log_hu = np.sign(hu) * np.log10(np.abs(hu) + 1e-12) / 12.0
    return np.concatenate([[aspect, fill], log_hu]).astype(np.float32)
