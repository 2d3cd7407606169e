"""The offline garment tagger: colour name + hex, pattern and (where possible) type from a crop.

Local-default provider of the vision gateway's ``/tag``: a classical baseline, measured by
``bench/vision_quality.py`` and ``bench/real_images.py``. The garment's pixels are, for a masked
crop (the offline detector paints all but the person model's garment pixels white, see
`unde.providers.garments.crop_jpeg`), everything but that paint; else the crop's salient
pixels (unlike its edge colours — white for flat lays); skin removed. The main colour is the
largest CIELAB k-means cluster, named with CIEDE2000 against the vocabulary.
Material cannot be read honestly from pixels without a model, so it is always reported as
unknown; the fine type is unknown too unless the caller passes a fine type as ``category``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
from PIL import Image
from scipy import ndimage

from unde.vision.colour import dominant_colours, lab_to_srgb, name_colour, rgb_hex, skin_mask_lab, srgb_to_lab
from unde.vision.pattern import classify_pattern
from unde.vision.segmentation import saliency
from unde.vocabulary import CATEGORIES, CATEGORY_OF_TYPE

#: Longest side of the internal working image.
WORK_SIDE: Final[int] = 160
#: Saliency above which a crop pixel belongs to the garment.
GARMENT_DELTA_E: Final[float] = 14.0
#: RGB level (every channel) of a masked crop's paint, and the share of the crop it must cover.
BACKDROP_LEVEL: Final[int] = 252
MIN_BACKDROP_SHARE: Final[float] = 0.01


@dataclass(frozen=True, slots=True)
class GarmentTags:
    """Attributes of one garment crop; None fields are listed in ``unknown``."""

    type: str | None
    category: str | None
    color: str | None
    color_hex: str | None
    pattern: str | None
    material: str | None
    probabilities: dict[str, float] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def _white_backdrop(rgb: np.ndarray) -> np.ndarray:
    """Near-white pixels connected to the crop's border: the paint of a masked crop (the offline
    detector's `crop_jpeg`, 255 before JPEG). Studio backdrops (the synthetic 250 grey-white)
    stay below the level and keep the saliency path."""
    white = (rgb >= BACKDROP_LEVEL).all(axis=-1)
    labels, _count = ndimage.label(white)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, edge[edge > 0])


def _garment_pixels(lab: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Boolean map of the garment within a crop, skin removed where possible: for a masked crop
    (the offline detector paints all but the garment white) everything but that paint, else the
    crop's salient pixels."""
    h, w, _ = lab.shape
    paint = _white_backdrop(rgb)
    inside = ~paint if MIN_BACKDROP_SHARE <= paint.mean() <= 0.95 else saliency(lab) > GARMENT_DELTA_E
    if inside.mean() < 0.05:  # crop is all garment (detail shot) or nothing stands out
        inside = np.zeros((h, w), dtype=bool)
        inside[h // 6: h - h // 6, w // 6: w - w // 6] = True
    skin = skin_mask_lab(lab) & inside
    if skin.sum() < 0.6 * inside.sum():
        inside = inside & ~skin
    return inside


def tag_garment(image: Image.Image, category: str | None = None) -> GarmentTags:
    """Tag a garment crop. ``category`` may be a coarse category or a fine type (or None).

    Never raises on a valid PIL image; tiny or featureless crops come back mostly unknown.
    """
    fine_type = category if category in CATEGORY_OF_TYPE else None
    coarse = CATEGORY_OF_TYPE.get(category or "", category if category in CATEGORIES else None)
    probabilities: dict[str, float] = {}
    if coarse is not None:
        probabilities["category"] = 1.0
    if fine_type is not None:
        probabilities["type"] = 1.0
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    colour = colour_hex = pattern = None
    if min(rgb.size) >= 8:
        scale = WORK_SIDE / max(rgb.size)
        if scale < 1:
            rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                             Image.Resampling.BOX)
        lab = srgb_to_lab(np.asarray(rgb))
        inside = _garment_pixels(lab, np.asarray(rgb))
        clusters = dominant_colours(lab[inside], k=3)
        if clusters:
            main = clusters[0][0]
            match = name_colour(main)
            colour, colour_hex = match.name, rgb_hex(lab_to_srgb(main))
            probabilities["color"] = round(match.probability, 3)
            guess = classify_pattern(lab, inside, main)
            pattern = guess.pattern
            probabilities["pattern"] = guess.confidence
    values = {"type": fine_type, "category": coarse, "color": colour, "pattern": pattern, "material": None}
    unknown = [name for name, value in values.items() if value is None]
    return GarmentTags(type=fine_type, category=coarse, color=colour, color_hex=colour_hex, pattern=pattern,
                       material=None, probabilities=probabilities, unknown=unknown)
