"""The offline garment detector: a real person model first, classical layout rules as fallback.

The local-default provider of the vision gateway's ``/detect``. `detect_garments`:

1. MediaPipe Pose (`unde.vision.person`) on a copy with the longer side 640 px; when it finds
   a person, the garments come from its landmarks and person mask (`unde.vision.pose_layout`);
2. otherwise (no person found — the flat-shaded synthetic renders often defeat BlazePose — or
   MediaPipe not installed) the classical path: downscale to ``WORK_HEIGHT`` rows, CIELAB,
   edge-colour background model → saliency/foreground (``segmentation``), the figure's body
   frame, zone colour signatures and layout rules (``layout``).

Boxes are scaled back to the photo. ``bench/vision_quality.py`` and ``bench/real_images.py``
measure both paths (synthetic street photos; real photos with labelled boxes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
from PIL import Image

from unde.vision import person
from unde.vision.colour import srgb_to_lab
from unde.vision.layout import WINDOWS, FigureAnalysis, GarmentRegion, mask_bbox, same_garment
from unde.vision.pose_layout import PoseLayout
from unde.vision.segmentation import find_body_frame, foreground_mask, saliency

#: Rows of the internal working image (boxes are scaled back to the input size).
WORK_HEIGHT: Final[int] = 200
#: A garment region smaller than this share of the figure's area (height²) is dropped.
MIN_REGION_SHARE: Final[float] = 0.004


@dataclass(frozen=True, slots=True)
class Detection:
    """One garment: pixel box in the input image, coarse category, confidence 0..1.

    ``mask`` (optional) is the garment's region at ``mask_scale`` of the input resolution.
    """

    bbox: tuple[int, int, int, int]
    category: str
    confidence: float
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    mask_scale: float = 1.0


def _working_lab(image: Image.Image) -> tuple[np.ndarray, float]:
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    scale = WORK_HEIGHT / rgb.height
    width = max(1, round(rgb.width * scale))
    small = rgb.resize((width, WORK_HEIGHT), Image.Resampling.BOX) if scale < 1 else rgb
    scale = small.height / rgb.height
    return srgb_to_lab(np.asarray(small)), scale


def _confidence(base: float, *signals: float) -> float:
    value = base
    for s in signals:
        value *= 0.6 + 0.4 * max(0.0, min(1.0, s))
    return round(max(0.05, min(0.99, value)), 3)


def _garments(fa: FigureAnalysis) -> list[GarmentRegion]:
    """Apply the layout rules to one located figure.

    Regions are grown back to front of what usually occludes what: shoes, the bottom, the top
    or dress, then outerwear; each skips pixels already claimed.
    """
    torso_c = fa.signature(-0.03, 0.03, 0.22, 0.40, symmetric=False)
    torso_s = fa.signature(0.085, 0.11, 0.24, 0.40, foreground_only=True)
    thigh = fa.signature(0.02, 0.07, 0.57, 0.66)
    gap = fa.signature(-0.012, 0.012, 0.58, 0.66, symmetric=False)
    feet = fa.signature(0.03, 0.10, 0.93, 0.99, foreground_only=True)
    min_pixels = max(4, int(MIN_REGION_SHARE * fa.frame.height**2))
    found: list[GarmentRegion] = []
    taken = np.zeros(fa.shape, dtype=bool)

    def add(category: str, colours: list[np.ndarray], seed: tuple[float, float, float, float],
            window_key: str, confidence: float) -> None:
        nonlocal taken
        mask = fa.grow(colours, seed, WINDOWS[window_key], taken=taken)
        box = mask_bbox(mask, min_pixels)
        if box is not None:
            found.append(GarmentRegion(category, box, confidence, mask))
            taken = taken | mask

    torso_is_skin = torso_c.skin > 0.6
    outer = (not torso_s.empty and torso_s.skin < 0.5 and torso_s.foreground > 0.5
             and not torso_is_skin and not same_garment(torso_c, torso_s))
    dress = (not outer and not torso_is_skin and thigh.skin < 0.5 and same_garment(torso_c, thigh)
             and same_garment(torso_c, gap))
    if not feet.empty and feet.foreground > 0.35 and feet.skin < 0.5:
        add("shoes", feet.main, (0.03, 0.10, 0.93, 0.99), "shoes", _confidence(0.75, feet.foreground, 1 - feet.skin))
    if not dress and not thigh.empty and thigh.skin < 0.5:
        add("bottom", thigh.main, (0.02, 0.07, 0.57, 0.66), "bottom",
            _confidence(0.8, 1 - thigh.skin, thigh.foreground))
    if dress:
        add("dress", torso_c.main, (-0.03, 0.03, 0.22, 0.66), "dress", _confidence(0.7, 1 - thigh.skin))
    elif outer:
        add("outerwear", torso_s.main, (0.085, 0.11, 0.24, 0.40), "outerwear",
            _confidence(0.75, torso_s.foreground, 1 - torso_s.skin))
        add("top", torso_c.main, (-0.03, 0.03, 0.22, 0.40), "top_under", _confidence(0.6, 1 - torso_c.skin))
    elif not torso_is_skin:
        add("top", torso_c.main, (-0.03, 0.03, 0.22, 0.40), "top", _confidence(0.8, 1 - torso_c.skin))
    for side in (-1, 1):
        bag = _bag(fa, side, taken, min_pixels)
        if bag is not None:
            found.append(bag)
            taken = taken | bag.mask
    return found


def _bag(fa: FigureAnalysis, side: int, taken: np.ndarray, min_pixels: int) -> GarmentRegion | None:
    """A compact, non-skin, foreground blob hanging beside one hand, or None."""
    u0, u1 = sorted((side * 0.2, side * 0.29))
    zone = fa.signature(u0, u1, 0.58, 0.68, symmetric=False, foreground_only=True)
    if zone.empty or zone.foreground < 0.7 or zone.skin > 0.3:
        return None
    w0, w1 = sorted((side * 0.1, side * 0.46))
    mask = fa.grow(zone.main[:1], (u0, u1, 0.58, 0.68), (w0, w1, 0.35, 0.95), taken=taken, mirror=False)
    box = mask_bbox(mask, min_pixels)
    if box is None:
        return None
    _h, w = fa.shape
    width, height = (box[2] - box[0]) / fa.frame.height, (box[3] - box[1]) / fa.frame.height
    fill = float(mask.sum()) / max(1, (box[2] - box[0]) * (box[3] - box[1]))
    # A bag hangs free: a region running into the search window's top, bottom or outer side
    # (or the photo's edge) is background structure, not a bag.
    outer_x = fa.frame.x(side * 0.46)
    touches_edge = (
        box[0] <= 1 or box[2] >= w - 1 or box[1] <= fa.frame.y(0.36) or box[3] >= fa.frame.y(0.94)
        or (box[2] >= outer_x - 1 if side > 0 else box[0] <= outer_x + 1)
    )
    if not (0.08 <= width <= 0.3 and 0.08 <= height <= 0.33) or fill < 0.55 or touches_edge:
        return None
    return GarmentRegion("bag", box, _confidence(0.5, zone.foreground, fill), mask)


def detect_garments(image: Image.Image) -> list[Detection]:
    """Find the garments of the main person of a photo: the person model, else the classical rules.

    ``[]`` when neither finds a figure (blank, uniform or tiny images). Never raises on a valid
    PIL image.
    """
    if image.width < 16 or image.height < 16:
        return []
    if person.available():
        found = detect_with_pose(image)
        if found is not None:
            return found
    return detect_classical(image)


def detect_with_pose(image: Image.Image) -> list[Detection] | None:
    """Garments from MediaPipe Pose's landmarks and mask; None when it finds no person."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    scale = person.MAX_SIDE / max(rgb.size)
    if scale != 1:
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                         Image.Resampling.BILINEAR)
    scale = rgb.width / image.width
    pixels = np.asarray(rgb)
    found = person.find_person(pixels)
    if found is None:
        return None
    return [_scaled(region.bbox, region.category, region.confidence, region.mask, scale, image)
            for region in PoseLayout(srgb_to_lab(pixels), found).regions()]


def _scaled(bbox: tuple[int, int, int, int], category: str, confidence: float, mask: np.ndarray,
            scale: float, image: Image.Image) -> Detection:
    x0, y0, x1, y1 = bbox
    box = (max(0, int(x0 / scale)), max(0, int(y0 / scale)),
           min(image.width, int(np.ceil(x1 / scale))), min(image.height, int(np.ceil(y1 / scale))))
    return Detection(box, category, confidence, mask, scale)


def detect_classical(image: Image.Image) -> list[Detection]:
    """Find garments worn by the main standing figure of a photo (classical rules, no weights).

    Returns detections with boxes in the input image's pixels; ``[]`` when no figure is found
    (blank, uniform or tiny images). Never raises on a valid PIL image.
    """
    if image.width < 16 or image.height < 16:
        return []
    lab, scale = _working_lab(image)
    sal = saliency(lab)
    fg = foreground_mask(sal)
    frame = find_body_frame(lab, fg)
    if frame is None:
        return []
    analysis = FigureAnalysis(lab, fg, frame)
    return [_scaled(region.bbox, region.category, region.confidence, region.mask, scale, image)
            for region in _garments(analysis)]
