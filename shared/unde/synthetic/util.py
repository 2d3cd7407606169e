"""Small helpers shared by the synthetic generators: stable seeding and colour maths."""

from __future__ import annotations

import hashlib
import random

import numpy as np

from unde.vocabulary import COLOUR_BY_NAME


def stable_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` that is stable across processes and Python versions.

    ``hash()`` is salted per process, so it must never be used for seeding; this hashes the
    ``repr`` of the parts with BLAKE2b instead.
    """
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def rng_for(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from ``parts`` (see :func:`stable_seed`)."""
    return random.Random(stable_seed(*parts))


def np_rng_for(*parts: object) -> np.random.Generator:
    """A numpy ``Generator`` seeded from ``parts`` (see :func:`stable_seed`)."""
    return np.random.default_rng(stable_seed(*parts))


def colour_rgb(name: str) -> tuple[int, int, int]:
    """sRGB triple of a vocabulary colour name."""
    return COLOUR_BY_NAME[name].rgb


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert sRGB values (0..255, shape (..., 3)) to CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = lin @ m.T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    eps = 216 / 24389
    kappa = 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    lab_l = 116 * f[..., 1] - 16
    lab_a = 500 * (f[..., 0] - f[..., 1])
    lab_b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([lab_l, lab_a, lab_b], axis=-1)


def delta_e(rgb1: np.ndarray | tuple[int, int, int], rgb2: np.ndarray | tuple[int, int, int]) -> float:
    """CIE76 colour difference between two sRGB colours."""
    lab1 = srgb_to_lab(np.asarray(rgb1))
    lab2 = srgb_to_lab(np.asarray(rgb2))
    return float(np.linalg.norm(lab1 - lab2))


def shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """Scale an sRGB colour's channels by ``factor`` (darker < 1 < lighter), clipped to 0..255."""
    r, g, b = (max(0, min(255, round(v * factor))) for v in rgb)
    return r, g, b
