"""Product photos of catalog SKUs, rendered deterministically with PIL.

Views by image rank (a SKU has 5–7 images, ``Sku.n_images``):

====  ==========  ==============================================================
rank  kind        view
====  ==========  ==============================================================
0     flat        flat lay on white, garment fills ~84 % of the 600×600 frame
1     on_model    neutral mannequin wearing the garment, plain studio background
2     detail      2.2× crop of the flat lay around a point on the garment
3     flat        flat lay rotated a few degrees
4     on_model    second pose, warmer/brighter light
5     flat        flat lay under a lighting change
6     detail      crop of the on-model shot
====  ==========  ==============================================================

Every image depends only on the SKU (its key seeds the random choices), so the same SKU gives
byte-identical JPEGs in any process.
"""

from __future__ import annotations

import io
from typing import Final

import numpy as np
from PIL import Image, ImageFilter

from unde.synthetic.body import Look, Pose
from unde.synthetic.catalog import Sku
from unde.synthetic.paint import Transform, draw_figure, draw_garment
from unde.synthetic.shapes import garment_parts, parts_bbox
from unde.synthetic.util import rng_for

IMAGE_KINDS: Final[tuple[str, ...]] = ("flat", "on_model", "detail", "flat", "on_model", "flat", "detail")
FLAT_SIZE: Final[int] = 600
MODEL_SIZE: Final[tuple[int, int]] = (480, 600)
MANNEQUIN: Final[tuple[int, int, int]] = (214, 208, 200)
JPEG_QUALITY: Final[int] = 88


def image_kind(rank: int) -> str:
    """The kind of the image at ``rank``: 'flat' | 'on_model' | 'detail'."""
    return IMAGE_KINDS[rank % len(IMAGE_KINDS)]


def image_kinds(sku: Sku) -> list[str]:
    """Kinds of all the SKU's images, in rank order."""
    return [image_kind(r) for r in range(sku.n_images)]


def flat_pose(look: Look) -> Pose:
    """The pose a garment is laid out in for a flat shot (sleeves spread, legs apart)."""
    return Pose(arm_angle=40.0 if look.category in ("top", "outerwear", "dress") else 15.0, leg_spread=0.03)


def _flat_base(look: Look, size: int = FLAT_SIZE) -> tuple[Image.Image, np.ndarray]:
    pose = flat_pose(look)
    parts = garment_parts(look, pose)
    x0, y0, x1, y1 = parts_bbox(parts)
    s = 0.84 * size / max(x1 - x0, y1 - y0)
    tf = Transform(s, size / 2 - (x0 + x1) / 2 * s, size / 2 - (y0 + y1) / 2 * s)
    canvas = Image.new("RGB", (size, size), (250, 250, 250))
    layer = Image.new("RGB", (size, size), (250, 250, 250))
    mask = draw_garment(layer, look, parts, tf)
    # Soft drop shadow under the flat lay.
    m_img = Image.fromarray((mask * 255).astype(np.uint8), "L")
    shadow = m_img.filter(ImageFilter.BoxBlur(6)).point(lambda v: int(v * 0.35))
    shadow_off = Image.new("L", (size, size), 0)
    shadow_off.paste(shadow, (5, 7))
    canvas.paste((200, 200, 200), (0, 0), shadow_off)
    canvas.paste(layer, (0, 0), m_img)
    return canvas, mask


def _model_base(look: Look, pose: Pose, size: tuple[int, int] = MODEL_SIZE) -> tuple[Image.Image, np.ndarray]:
    parts = garment_parts(look, pose)
    gx0, gy0, gx1, gy1 = parts_bbox(parts)
    # Viewport: the garment plus context, at the output aspect ratio.
    w, h = size
    vw, vh = (gx1 - gx0) * 1.45, (gy1 - gy0) * 1.3
    vh = max(vh, 0.35, vw * h / w)
    s = h / vh
    cx, cy = (gx0 + gx1) / 2, (gy0 + gy1) / 2
    tf = Transform(s, w / 2 - cx * s, h / 2 - cy * s)
    grad = np.linspace(236, 206, h, dtype=np.float32)[:, None, None] * np.ones((1, w, 3), dtype=np.float32)
    grad[..., 2] += 4
    canvas = Image.fromarray(grad.clip(0, 255).astype(np.uint8), "RGB")
    draw_figure(canvas, pose, tf, MANNEQUIN)
    mask = draw_garment(canvas, look, parts, tf)
    return canvas, mask


def _relight(img: Image.Image, brightness: float, warmth: float) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32) * brightness
    arr[..., 0] *= 1 + warmth
    arr[..., 2] *= 1 - warmth
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def _anchor(mask: np.ndarray, jitter: tuple[float, float]) -> tuple[int, int]:
    """A garment pixel near the mask centroid shifted by ``jitter`` (fractions of the mask size)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return mask.shape[1] // 2, mask.shape[0] // 2
    tx = xs.mean() + jitter[0] * (xs.max() - xs.min())
    ty = ys.mean() + jitter[1] * (ys.max() - ys.min())
    i = int(np.argmin((xs - tx) ** 2 + (ys - ty) ** 2))
    return int(xs[i]), int(ys[i])


def _detail(img: Image.Image, mask: np.ndarray, zoom: float, jitter: tuple[float, float]) -> Image.Image:
    w, h = img.size
    ax, ay = _anchor(mask, jitter)
    cw, ch = w / zoom, h / zoom
    x0 = min(max(ax - cw / 2, 0), w - cw)
    y0 = min(max(ay - ch / 2, 0), h - ch)
    return img.resize((FLAT_SIZE, round(FLAT_SIZE * h / w)), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))


class _Views:
    """Lazily rendered base images of one SKU, shared by the views derived from them."""

    def __init__(self, sku: Sku) -> None:
        rng = rng_for("views", sku.brand, sku.external_id)
        self.sku = sku
        self.angle = rng.choice((-1, 1)) * rng.uniform(3, 8)
        self.pose_a = Pose(arm_angle=rng.uniform(9, 14), leg_spread=rng.uniform(0.0, 0.02), bag_side=1)
        self.pose_b = Pose(arm_angle=rng.uniform(16, 24), leg_spread=rng.uniform(0.02, 0.05), bag_side=-1)
        self.light_b = (rng.uniform(1.02, 1.08), rng.uniform(0.03, 0.06))
        self.light_5 = (rng.uniform(0.88, 0.96), rng.uniform(-0.05, 0.05))
        self.jitter = (rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2))
        self._flat: tuple[Image.Image, np.ndarray] | None = None
        self._model: tuple[Image.Image, np.ndarray] | None = None

    @property
    def flat(self) -> tuple[Image.Image, np.ndarray]:
        if self._flat is None:
            self._flat = _flat_base(self.sku)
        return self._flat

    @property
    def model(self) -> tuple[Image.Image, np.ndarray]:
        if self._model is None:
            self._model = _model_base(self.sku, self.pose_a)
        return self._model

    def view(self, rank: int) -> Image.Image:
        k = rank % len(IMAGE_KINDS)
        if k == 0:
            return self.flat[0].copy()
        if k == 1:
            return self.model[0].copy()
        if k == 2:
            return _detail(*self.flat, 2.2, self.jitter)
        if k == 3:
            return self.flat[0].rotate(self.angle, resample=Image.Resampling.NEAREST, fillcolor=(250, 250, 250))
        if k == 4:
            return _relight(_model_base(self.sku, self.pose_b)[0], *self.light_b)
        if k == 5:
            return _relight(self.flat[0], *self.light_5)
        return _detail(*self.model, 1.8, (-self.jitter[0], -self.jitter[1]))


def render_product_image(sku: Sku, rank: int) -> Image.Image:
    """Render the SKU's image number ``rank`` (see the module docstring for the views)."""
    return _Views(sku).view(rank)


def render_product_images(sku: Sku) -> list[Image.Image]:
    """All of a SKU's images in rank order (renders each base image once)."""
    views = _Views(sku)
    return [views.view(r) for r in range(sku.n_images)]


def jpeg_bytes(img: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """Encode an image as baseline JPEG (deterministic for a given Pillow/libjpeg build)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()
