"""Synthetic street photos with exact per-garment ground truth.

A standing figure (skin-tone head and arms) wears 1–4 garments — a top, a dress or outerwear
open over a top; a bottom unless a dress; shoes; optionally a bag at the side — in front of
a random cluttered background. The photo then gets a mild perspective warp, blur, noise and a
lighting shift. Boxes come from the *warped* per-pixel label map, so each box is exactly the
garment's visible part in the final image. Every visible garment's box covers ≥ 3 % of the
image (a photo is re-drawn otherwise).

Garment mix per slot: ~70 % a catalog SKU in stock in the photo's mall, ~15 % a catalog SKU
*not* in stock there, ~15 % a garment that is not in the catalog at all.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from unde.synthetic.body import SOLE_Y, Look, Pose
from unde.synthetic.catalog import Catalog, Design, Sku, random_look
from unde.synthetic.paint import Transform, draw_figure, draw_garment
from unde.synthetic.shapes import garment_parts
from unde.synthetic.util import rng_for
from unde.vocabulary import CATEGORY_OF_TYPE, TYPES_BY_CATEGORY

STREET_SIZE: Final[tuple[int, int]] = (800, 1000)
MIN_BOX_FRACTION: Final[float] = 0.03
P_IN_STOCK: Final[float] = 0.70
P_NOT_IN_MALL: Final[float] = 0.15
SKIN_TONES: Final[tuple[tuple[int, int, int], ...]] = (
    (241, 194, 167),
    (224, 172, 138),
    (198, 134, 98),
    (160, 104, 72),
    (110, 70, 48),
)
HAIR: Final[tuple[tuple[int, int, int], ...]] = ((30, 24, 20), (70, 45, 30), (120, 90, 50), (20, 20, 20))


@dataclass(frozen=True, slots=True)
class FreshGarment:
    """A garment that is not in the catalog (same visual fields as a ``Sku``)."""

    category: str
    product_type: str
    colour: str
    secondary_colour: str
    material: str
    pattern: str
    design: Design


@dataclass(slots=True)
class StreetPhoto:
    """A rendered street photo and its ground truth (``items`` follow ground_truth.json)."""

    photo_id: str
    mall: str
    image: Image.Image
    items: list[dict[str, Any]] = field(default_factory=list)

    def record(self, file: str) -> dict[str, Any]:
        """The photo's entry in ground_truth.json."""
        w, h = self.image.size
        return {
            "photo_id": self.photo_id,
            "file": file,
            "mall": self.mall,
            "width": w,
            "height": h,
            "items": self.items,
        }


@dataclass(frozen=True, slots=True)
class _Slot:
    look: Look
    sku: Sku | None
    available: bool


def _pick(
    rng: random.Random,
    category: str,
    mall: str,
    by_category: Mapping[str, list[Sku]],
    in_stock: Mapping[tuple[str, str], frozenset[str]],
    product_type: str | None = None,
) -> _Slot:
    roll = rng.random()
    pool = [s for s in by_category.get(category, []) if product_type is None or s.product_type == product_type]
    if roll < P_IN_STOCK + P_NOT_IN_MALL and pool:
        want = roll < P_IN_STOCK
        matching = [s for s in pool if (mall in in_stock.get(s.key, frozenset())) == want]
        if matching:
            sku = rng.choice(matching)
            return _Slot(sku, sku, want)
    ptype = product_type or rng.choice(TYPES_BY_CATEGORY[category])
    colour, secondary, material, pattern, design = random_look(rng, ptype)
    fresh = FreshGarment(CATEGORY_OF_TYPE[ptype], ptype, colour, secondary, material, pattern, design)
    return _Slot(fresh, None, False)


def _outfit(
    rng: random.Random,
    mall: str,
    by_category: Mapping[str, list[Sku]],
    in_stock: Mapping[tuple[str, str], frozenset[str]],
) -> list[_Slot]:
    """Garments in drawing order (bottom layer first)."""
    style = rng.choices(("separates", "dress", "layered"), weights=(0.55, 0.2, 0.25))[0]
    slots: list[_Slot] = []
    want_shoes = rng.random() < 0.85
    want_bag = rng.random() < 0.4
    if style != "dress":
        slots.append(_pick(rng, "bottom", mall, by_category, in_stock))
    if want_shoes:
        slots.append(_pick(rng, "shoes", mall, by_category, in_stock))
    if style == "dress":
        slots.append(_pick(rng, "dress", mall, by_category, in_stock))
    else:
        slots.append(_pick(rng, "top", mall, by_category, in_stock))
    if style == "layered":
        slots.append(_pick(rng, "outerwear", mall, by_category, in_stock))
    if want_bag and len(slots) < 4:
        slots.append(_pick(rng, "bag", mall, by_category, in_stock))
    return slots


def _background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    w, h = size
    top = np.array([rng.randint(120, 230) for _ in range(3)], dtype=np.float32)
    bottom = np.array([rng.randint(60, 170) for _ in range(3)], dtype=np.float32)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = (top * (1 - t) + bottom * t) * np.ones((1, w, 1), dtype=np.float32)
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    horizon = rng.randint(int(h * 0.6), int(h * 0.8))
    for _ in range(rng.randint(5, 10)):  # buildings with windows
        bx0 = rng.randint(-100, w)
        bw, bh = rng.randint(80, 300), rng.randint(200, horizon)
        col = tuple(rng.randint(70, 210) for _ in range(3))
        draw.rectangle((bx0, horizon - bh, bx0 + bw, horizon), fill=col)
        win = tuple(max(0, c - rng.randint(30, 60)) for c in col)
        for wy in range(horizon - bh + 15, horizon - 30, rng.randint(35, 60)):
            for wx in range(bx0 + 10, bx0 + bw - 20, rng.randint(30, 50)):
                draw.rectangle((wx, wy, wx + 14, wy + 20), fill=win)
    ground = tuple(rng.randint(90, 170) for _ in range(3))
    draw.rectangle((0, horizon, w, h), fill=ground)
    for _ in range(rng.randint(3, 8)):  # clutter: signs, poles, planters
        x, y = rng.randint(0, w), rng.randint(int(h * 0.3), h)
        col = tuple(rng.randint(40, 230) for _ in range(3))
        if rng.random() < 0.5:
            draw.rectangle((x, y - rng.randint(20, 200), x + rng.randint(6, 60), y), fill=col)
        else:
            r = rng.randint(10, 50)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=col)
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 6, (h, w, 1)).astype(np.float32)
    out = np.asarray(img, dtype=np.float32) + noise
    return Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")


def _perspective_coeffs(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> list[float]:
    """Coefficients for ``Image.transform(PERSPECTIVE)`` mapping output ``dst`` → input ``src``."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(rows, dtype=np.float64)
    b = np.array([c for p in src for c in p], dtype=np.float64)
    return [float(c) for c in np.linalg.solve(a, b)]


def _compose(rng: random.Random, slots: list[_Slot], size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    w, h = size
    canvas = _background(rng, size)
    label = np.zeros((h, w), dtype=np.uint8)
    has_outer = any(s.look.category == "outerwear" for s in slots)
    pose = Pose(
        arm_angle=rng.uniform(8, 15),
        leg_spread=rng.uniform(0.0, 0.01),
        bag_side=rng.choice((-1, 1)),
        open_front=rng.uniform(0.13, 0.17) if has_outer else 0.0,
    )
    s = h * rng.uniform(0.97, 1.03)
    tf = Transform(s, w / 2 + rng.uniform(-0.07, 0.07) * w, h * 0.99 - SOLE_Y * s)
    draw_figure(canvas, pose, tf, rng.choice(SKIN_TONES), rng.choice(HAIR), label, 1)
    for i, slot in enumerate(slots):
        draw_garment(canvas, slot.look, garment_parts(slot.look, pose), tf, label, i + 2)
    return canvas, label


def _finish(rng: random.Random, img: Image.Image, label: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """Perspective warp (image and labels alike), blur, lighting shift and sensor noise."""
    w, h = img.size
    j = 0.045
    src = [
        (rng.uniform(0, j) * w, rng.uniform(0, j) * h),
        (w - rng.uniform(0, j) * w, rng.uniform(0, j) * h),
        (w - rng.uniform(0, j) * w, h - rng.uniform(0, j) * h),
        (rng.uniform(0, j) * w, h - rng.uniform(0, j) * h),
    ]
    dst = [(0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h))]
    coeffs = _perspective_coeffs(src, dst)
    warped = img.transform(img.size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
    lab_img = Image.fromarray(label, "L").transform(
        img.size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.NEAREST
    )
    warped = warped.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.1)))
    arr = np.asarray(warped, dtype=np.float32) * rng.uniform(0.9, 1.08)
    warmth = rng.uniform(-0.05, 0.05)
    arr[..., 0] *= 1 + warmth
    arr[..., 2] *= 1 - warmth
    arr += np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(2, 5), arr.shape).astype(np.float32)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB"), np.asarray(lab_img)


def _item(slot: _Slot, box: list[int]) -> dict[str, Any]:
    look = slot.look
    return {
        "bbox": box,
        "category": look.category,
        "product_type": look.product_type,
        "colour": look.colour,
        "secondary_colour": look.secondary_colour if look.pattern != "solid" else None,
        "pattern": look.pattern,
        "material": look.material,
        "brand": slot.sku.brand if slot.sku else None,
        "external_id": slot.sku.external_id if slot.sku else None,
        "in_catalog": slot.sku is not None,
        "available_in_mall": slot.available,
    }


def render_street_photo(
    catalog: Catalog,
    in_stock: Mapping[tuple[str, str], frozenset[str]],
    mall: str,
    index: int,
    seed: int,
    size: tuple[int, int] = STREET_SIZE,
) -> StreetPhoto:
    """Render street photo number ``index`` taken in ``mall`` (deterministic in all arguments).

    ``in_stock`` maps SKU keys to the malls where the SKU is in stock (see
    ``AvailabilityPlan.in_stock_malls``) and decides ``available_in_mall``.
    """
    by_category: dict[str, list[Sku]] = {}
    for sku in catalog.skus:
        by_category.setdefault(sku.category, []).append(sku)
    photo_id = f"street-{seed}-{index:04d}"
    area = size[0] * size[1]
    for attempt in range(12):
        rng = rng_for("street", seed, catalog.scale, index, attempt)
        slots = _outfit(rng, mall, by_category, in_stock)
        if attempt >= 8:  # give up on layering/bags that keep hiding things
            slots = [s for s in slots if s.look.category not in ("outerwear", "bag")]
        img, label = _compose(rng, slots, size)
        img, label = _finish(rng, img, label)
        items: list[dict[str, Any]] = []
        ok = True
        for i, slot in enumerate(slots):
            ys, xs = np.nonzero(label == i + 2)
            if xs.size == 0:
                ok = False
                break
            box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            if (box[2] - box[0]) * (box[3] - box[1]) < MIN_BOX_FRACTION * area:
                ok = False
                break
            items.append(_item(slot, box))
        if ok:
            return StreetPhoto(photo_id, mall, img, items)
    raise RuntimeError(f"could not lay out street photo {photo_id}")  # pragma: no cover
