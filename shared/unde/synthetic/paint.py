"""Rasterising garments and figures: pattern fills, shading, details, label masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from unde.synthetic.body import Look, Part, Point, Pose, body_parts
from unde.synthetic.util import colour_rgb, np_rng_for, shade


@dataclass(frozen=True, slots=True)
class Transform:
    """Body coordinates → pixels: ``px = ox + x * s``, ``py = oy + y * s``."""

    s: float
    ox: float
    oy: float

    def pt(self, p: Point) -> tuple[float, float]:
        """Map one point."""
        return self.ox + p[0] * self.s, self.oy + p[1] * self.s

    def pts(self, ps: tuple[Point, ...]) -> list[tuple[float, float]]:
        """Map a polygon."""
        return [self.pt(p) for p in ps]


def pattern_texture(look: Look, tf: Transform, box: tuple[int, int, int, int]) -> np.ndarray:
    """RGB float texture (h, w, 3) of the garment's pattern over pixel box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    primary = np.array(colour_rgb(look.colour), dtype=np.float32)
    secondary = np.array(colour_rgb(look.secondary_colour), dtype=np.float32)
    tex = np.empty((h, w, 3), dtype=np.float32)
    tex[:] = primary
    if look.pattern == "solid" or w <= 0 or h <= 0:
        return tex
    d = look.design
    u = (np.arange(x0, x1, dtype=np.float32) - tf.ox) / tf.s
    v = (np.arange(y0, y1, dtype=np.float32) - tf.oy) / tf.s
    uu, vv = np.meshgrid(u, v)
    if look.pattern == "striped":
        coord = uu if d.stripe_vertical else vv
        sel = np.mod(coord, d.stripe_period) < d.stripe_period * d.stripe_fraction
    elif look.pattern == "checked":
        p, f = d.check_period, 0.2
        a = np.mod(uu, p) < p * f
        b = np.mod(vv, p) < p * f
        sel = a | b
        tex[a & b] = primary * 0.35 + secondary * 0.65
        sel = sel & ~(a & b)
    elif look.pattern == "dotted":
        sp = d.dot_spacing
        row = np.floor(vv / sp)
        shift = np.where(np.mod(row, 2) == 0, 0.0, sp / 2)
        du = np.mod(uu + shift, sp) - sp / 2
        dv = np.mod(vv, sp) - sp / 2
        sel = du * du + dv * dv < d.dot_radius**2
    else:
        sel = _print_mask(look, tf, box)
    tex[sel] = secondary
    return tex


def _print_mask(look: Look, tf: Transform, box: tuple[int, int, int, int]) -> np.ndarray:
    """Random flowers/blobs seeded by the design's ``print_seed`` (body coordinates)."""
    x0, y0, x1, y1 = box
    img = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(img)
    rng = np_rng_for("print", look.design.print_seed)
    n = int(260 * look.design.print_density)
    centres = rng.uniform((-0.5, -0.05), (0.5, 1.05), size=(n, 2))
    sizes = rng.uniform(0.008, 0.02, size=n)
    kinds = rng.integers(0, 2, size=n)
    for (cx, cy), r, k in zip(centres, sizes, kinds, strict=True):
        px, py = tf.ox + cx * tf.s - x0, tf.oy + cy * tf.s - y0
        rp = r * tf.s
        if px < -3 * rp or py < -3 * rp or px > x1 - x0 + 3 * rp or py > y1 - y0 + 3 * rp:
            continue
        if k == 0:  # flower: five petals
            for j in range(5):
                ang = j * 2 * np.pi / 5
                qx, qy = px + np.cos(ang) * rp, py + np.sin(ang) * rp
                draw.ellipse((qx - rp * 0.7, qy - rp * 0.7, qx + rp * 0.7, qy + rp * 0.7), fill=255)
        else:  # blob
            draw.ellipse((px - rp * 1.4, py - rp, px + rp * 1.4, py + rp), fill=255)
    return np.asarray(img) > 127


def _poly_mask(size: tuple[int, int], polys: list[list[tuple[float, float]]]) -> Image.Image:
    img = Image.new("L", size, 0)
    draw = ImageDraw.Draw(img)
    for poly in polys:
        draw.polygon(poly, fill=255)
    return img


def draw_garment(
    canvas: Image.Image,
    look: Look,
    parts: list[Part],
    tf: Transform,
    label: np.ndarray | None = None,
    label_id: int = 0,
) -> np.ndarray:
    """Paint a garment onto ``canvas`` (in place); returns its boolean pixel mask.

    When ``label`` is given, ``label[mask] = label_id`` so the topmost garment per pixel is known.
    """
    size = canvas.size
    fill_polys = [tf.pts(p.points) for p in parts if p.role == "fill"]
    dark_polys = [tf.pts(p.points) for p in parts if p.role == "dark"]
    trim_polys = [tf.pts(p.points) for p in parts if p.role == "trim"]
    union = _poly_mask(size, fill_polys + dark_polys + trim_polys)
    bbox = union.getbbox()
    if bbox is None:
        return np.zeros((size[1], size[0]), dtype=bool)
    pad = 2
    x0, y0 = max(bbox[0] - pad, 0), max(bbox[1] - pad, 0)
    x1, y1 = min(bbox[2] + pad, size[0]), min(bbox[3] + pad, size[1])
    box = (x0, y0, x1, y1)
    tex = pattern_texture(look, tf, box)
    dark = np.asarray(_poly_mask(size, dark_polys).crop(box)) > 0
    trim = np.asarray(_poly_mask(size, trim_polys).crop(box)) > 0
    tex[dark] *= 0.8 if look.colour not in ("black", "navy") else 1.6
    tex[trim] = np.array(colour_rgb(look.design.trim_colour), dtype=np.float32)
    # Shading: darker towards the silhouette's edges, soft top-left light.
    u_crop = union.crop(box)
    radius = max(2.0, tf.s * 0.012)
    soft = np.asarray(u_crop.filter(ImageFilter.BoxBlur(radius)), dtype=np.float32) / 255.0
    h, w = y1 - y0, x1 - x0
    grad = (
        1.04
        - 0.08 * (np.arange(h, dtype=np.float32) / max(h, 1))[:, None]
        - 0.03 * (np.arange(w, dtype=np.float32) / max(w, 1))[None, :]
    )
    tex *= ((0.86 + 0.14 * soft) * grad)[..., None]
    layer = Image.fromarray(np.clip(tex, 0, 255).astype(np.uint8), "RGB")
    canvas.paste(layer, (x0, y0), u_crop)
    # Outlines and details.
    draw = ImageDraw.Draw(canvas)
    base = colour_rgb(look.colour)
    line_col = shade(base, 0.55) if sum(base) > 150 else shade((90, 90, 90), 1.0)
    lw = max(1, round(tf.s * 0.0025))
    for poly in fill_polys + dark_polys:
        draw.line([*poly, poly[0]], fill=line_col, width=lw)
    for p in parts:
        if p.role == "line":
            draw.line(tf.pts(p.points), fill=line_col, width=max(1, round(p.width * tf.s)))
        elif p.role == "dot":
            cx, cy = tf.pt(p.points[0])
            r = p.radius * tf.s
            draw.ellipse(
                (cx - r, cy - r, cx + r, cy + r),
                fill=shade(base, 0.5) if sum(base) > 150 else (200, 200, 200),
            )
    mask = np.zeros((size[1], size[0]), dtype=bool)
    mask[y0:y1, x0:x1] = np.asarray(u_crop) > 0
    if label is not None:
        label[mask] = label_id
    return mask


def draw_figure(
    canvas: Image.Image,
    pose: Pose,
    tf: Transform,
    skin: tuple[int, int, int],
    hair: tuple[int, int, int] | None = None,
    label: np.ndarray | None = None,
    label_id: int = 1,
) -> None:
    """Draw a simple standing figure (mannequin when ``hair`` is None)."""
    draw = ImageDraw.Draw(canvas)
    mask = Image.new("L", canvas.size, 0) if label is not None else None
    mdraw = ImageDraw.Draw(mask) if mask is not None else None
    edge = shade(skin, 0.8)
    for kind, geom in body_parts(pose):
        if kind == "ellipse":
            (cx, cy), (rx, ry) = geom
            px, py = tf.pt((cx, cy))
            box = (px - rx * tf.s, py - ry * tf.s, px + rx * tf.s, py + ry * tf.s)
            draw.ellipse(box, fill=skin, outline=edge)
            if mdraw is not None:
                mdraw.ellipse(box, fill=255)
        else:
            poly = tf.pts(geom)
            draw.polygon(poly, fill=skin, outline=edge)
            if mdraw is not None:
                mdraw.polygon(poly, fill=255)
    if hair is not None:
        cx, cy = tf.pt((0.0, 0.05))
        draw.chord((cx - 0.056 * tf.s, cy - 0.05 * tf.s, cx + 0.056 * tf.s, cy + 0.06 * tf.s), 180, 360, fill=hair)
    if label is not None and mask is not None:
        label[np.asarray(mask) > 0] = label_id
