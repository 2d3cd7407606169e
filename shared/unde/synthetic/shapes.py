"""Garment silhouettes as polygons in *body coordinates*.

Body coordinates: the standing figure's head top is at y = 0 and its soles at y = 1; x = 0 is
the body's vertical axis (negative = figure's right, image left). The same polygons are used
for flat lays (scaled to fill the frame), on-model shots and street photos, so a garment looks
the same everywhere and ground truth stays exact.
"""

from __future__ import annotations

import math

from unde.synthetic.body import (
    ARM_LEN,
    HIP_X,
    HIP_Y,
    NECK_Y,
    SHOULDER_X,
    SHOULDER_Y,
    WAIST_X,
    WAIST_Y,
    Look,
    Part,
    Pose,
    limb_quad,
    shoulder_point,
)
from unde.synthetic.shapes_lower import bag_parts, bottom_parts, shoes_parts


def _sleeves(look: Look, pose: Pose, outer: bool) -> list[Part]:
    d = look.design
    if d.sleeve == "none":
        return []
    long_sleeve = d.sleeve == "long"
    length = (ARM_LEN - 0.02 if long_sleeve else 0.12) + (0.01 if outer else 0.0)
    w0, w1 = (0.085, 0.066) if outer else (0.072, 0.058 if long_sleeve else 0.064)
    out: list[Part] = []
    for side in (-1, 1):
        out.append(Part("fill", limb_quad(shoulder_point(side), pose.arm_angle, side, length, w0 * d.fit, w1 * d.fit)))
        if long_sleeve and look.product_type in ("sweater", "hoodie", "bomber_jacket"):
            a = math.radians(pose.arm_angle)
            sx, sy = shoulder_point(side)
            start = (sx + side * math.sin(a) * (length - 0.025), sy + math.cos(a) * (length - 0.025))
            out.append(Part("dark", limb_quad(start, pose.arm_angle, side, 0.025, w1 * d.fit, w1 * d.fit)))
    return out


def _top(look: Look, pose: Pose) -> list[Part]:
    d, t = look.design, look.product_type
    hem = HIP_Y + 0.01 + (d.length - 1.0) * 0.12
    sx, hx = SHOULDER_X * d.fit, (HIP_X + 0.008) * d.fit
    dip = 0.05 if t in ("t_shirt", "sweater") else 0.035
    body = (
        (-0.042, NECK_Y + 0.005),
        (-sx, SHOULDER_Y),
        (-(HIP_X + 0.004) * d.fit, SHOULDER_Y + 0.1),
        (-hx, hem),
        (hx, hem),
        ((HIP_X + 0.004) * d.fit, SHOULDER_Y + 0.1),
        (sx, SHOULDER_Y),
        (0.042, NECK_Y + 0.005),
        (0.0, NECK_Y + dip),
    )
    parts = [*_sleeves(look, pose, outer=False), Part("fill", body)]
    if t in ("sweater", "hoodie"):
        parts.append(Part("dark", ((-hx, hem - 0.03), (hx, hem - 0.03), (hx, hem), (-hx, hem))))
    if t == "hoodie":
        parts.append(
            Part(
                "fill",
                (
                    (-0.075, 0.085),
                    (-0.085, 0.14),
                    (-0.05, SHOULDER_Y + 0.015),
                    (0.05, SHOULDER_Y + 0.015),
                    (0.085, 0.14),
                    (0.075, 0.085),
                    (0.045, 0.125),
                    (0.0, 0.15),
                    (-0.045, 0.125),
                ),
            )
        )
        parts.append(Part("dark", ((-0.06, 0.36), (0.06, 0.36), (0.075, hem - 0.04), (-0.075, hem - 0.04))))
        for side in (-1, 1):
            parts.append(Part("line", ((side * 0.02, 0.15), (side * 0.024, 0.24)), width=0.004))
    if d.collar or t == "shirt":
        for side in (-1, 1):
            parts.append(
                Part(
                    "dark",
                    (
                        (side * 0.042, NECK_Y),
                        (side * 0.004, NECK_Y + dip + 0.004),
                        (side * 0.06, NECK_Y + 0.04),
                    ),
                )
            )
    if t == "shirt" or d.closure == "buttons":
        parts.append(Part("line", ((0.0, NECK_Y + dip), (0.0, hem)), width=0.003))
        n = max(d.buttons, 4)
        for i in range(n):
            y = NECK_Y + dip + 0.02 + i * (hem - NECK_Y - dip - 0.04) / max(n - 1, 1)
            parts.append(Part("dot", ((0.008, y),), radius=0.005))
    elif d.closure == "zip":
        parts.append(Part("line", ((0.0, NECK_Y + dip), (0.0, hem)), width=0.004))
    if d.pockets and t in ("shirt", "t_shirt"):
        parts.append(Part("line", ((-0.075, 0.22), (-0.035, 0.22), (-0.035, 0.27), (-0.075, 0.27), (-0.075, 0.22))))
    return parts


def _outerwear(look: Look, pose: Pose) -> list[Part]:
    d, t = look.design, look.product_type
    base_hem = {"bomber_jacket": 0.45, "blazer": 0.52, "coat": 0.76, "denim_jacket": 0.47}[t]
    hem = base_hem + (d.length - 1.0) * (0.15 if t == "coat" else 0.08)
    flare = 0.035 if t == "coat" else 0.012
    sx, ax = (SHOULDER_X + 0.014) * d.fit, (HIP_X + 0.014) * d.fit
    g = pose.open_front / 2
    parts = _sleeves(look, pose, outer=True)
    for side in (-1, 1):
        s = side
        panel = (
            (s * max(g, 0.002), NECK_Y + 0.04),
            (s * 0.048, NECK_Y),
            (s * sx, SHOULDER_Y - 0.004),
            (s * ax, SHOULDER_Y + 0.1),
            (s * (ax + flare), hem),
            (s * max(g, 0.0), hem),
        )
        parts.append(Part("fill", panel))
        if t in ("blazer", "coat"):
            parts.append(
                Part(
                    "dark",
                    (
                        (s * 0.048, NECK_Y),
                        (s * (g + 0.062), NECK_Y + 0.05),
                        (s * (g + 0.002), NECK_Y + 0.16 + 0.02 * d.length),
                        (s * max(g, 0.002), NECK_Y + 0.04),
                    ),
                )
            )
        if t == "bomber_jacket":
            parts.append(
                Part(
                    "dark",
                    (
                        (s * g, hem - 0.03),
                        (s * (ax + flare), hem - 0.03),
                        (s * (ax + flare), hem),
                        (s * g, hem),
                    ),
                )
            )
            parts.append(
                Part(
                    "dark",
                    (
                        (s * 0.048, NECK_Y - 0.004),
                        (s * 0.06, NECK_Y + 0.015),
                        (s * g, NECK_Y + 0.05),
                        (s * g, NECK_Y + 0.03),
                    ),
                )
            )
        if t == "denim_jacket":
            parts.append(
                Part(
                    "line",
                    (
                        (s * (g + 0.02), 0.22),
                        (s * (g + 0.07), 0.22),
                        (s * (g + 0.07), 0.27),
                        (s * (g + 0.02), 0.27),
                        (s * (g + 0.02), 0.22),
                    ),
                )
            )
            parts.append(Part("line", ((s * (g + 0.002), 0.33), (s * ax, 0.33)), width=0.003))
            parts.append(
                Part(
                    "dark",
                    (
                        (s * 0.048, NECK_Y - 0.004),
                        (s * 0.075, NECK_Y + 0.03),
                        (s * (g + 0.03), NECK_Y + 0.06),
                        (s * max(g, 0.002), NECK_Y + 0.04),
                    ),
                )
            )
        if d.pockets and t in ("blazer", "coat"):
            y = hem - 0.12 if t == "coat" else hem - 0.09
            parts.append(Part("line", ((s * (g + 0.03), y), (s * (ax - 0.005), y)), width=0.005))
    if g < 0.01:
        if d.closure == "zip":
            parts.append(Part("line", ((0.0, NECK_Y + 0.04), (0.0, hem)), width=0.004))
        for i in range(d.buttons):
            y = NECK_Y + 0.17 + i * (hem - NECK_Y - 0.22) / max(d.buttons, 1)
            parts.append(Part("dot", ((0.0, y),), radius=0.006))
    return parts


def _dress(look: Look, pose: Pose) -> list[Part]:
    d, t = look.design, look.product_type
    hem = {"midi_dress": 0.74, "maxi_dress": 0.9, "shirt_dress": 0.68}[t] + (d.length - 1.0) * 0.08
    flare = (0.18 if t == "maxi_dress" else 0.15) * d.fit
    strap = 0.06 if d.sleeve == "none" else SHOULDER_X * 0.98
    body = (
        (-0.042, NECK_Y + 0.005),
        (-strap, SHOULDER_Y),
        (-(HIP_X - 0.005), SHOULDER_Y + 0.1),
        (-WAIST_X * d.fit, WAIST_Y),
        (-flare, hem),
        (flare, hem),
        (WAIST_X * d.fit, WAIST_Y),
        ((HIP_X - 0.005), SHOULDER_Y + 0.1),
        (strap, SHOULDER_Y),
        (0.042, NECK_Y + 0.005),
        (0.0, NECK_Y + 0.06),
    )
    parts = [*_sleeves(look, pose, outer=False), Part("fill", body)]
    if t == "shirt_dress":
        w = WAIST_X * d.fit + 0.004
        parts.append(
            Part(
                "dark",
                ((-w, WAIST_Y - 0.012), (w, WAIST_Y - 0.012), (w, WAIST_Y + 0.012), (-w, WAIST_Y + 0.012)),
            )
        )
        parts.append(Part("line", ((0.0, NECK_Y + 0.06), (0.0, hem)), width=0.003))
        for i in range(max(d.buttons, 4)):
            parts.append(Part("dot", ((0.008, NECK_Y + 0.08 + i * 0.06),), radius=0.005))
        for side in (-1, 1):
            parts.append(
                Part(
                    "dark",
                    ((side * 0.042, NECK_Y), (side * 0.004, NECK_Y + 0.064), (side * 0.06, NECK_Y + 0.04)),
                )
            )
    return parts


def garment_parts(look: Look, pose: Pose) -> list[Part]:
    """The polygons of a garment worn by a figure in ``pose`` (body coordinates)."""
    builders = {
        "top": _top,
        "outerwear": _outerwear,
        "dress": _dress,
        "bottom": bottom_parts,
        "shoes": shoes_parts,
        "bag": bag_parts,
    }
    return builders[look.category](look, pose)


def parts_bbox(parts: list[Part]) -> tuple[float, float, float, float]:
    """Bounding box ``(x0, y0, x1, y1)`` of the mask-forming parts, in body units."""
    xs = [p[0] for part in parts if part.role in ("fill", "dark", "trim") for p in part.points]
    ys = [p[1] for part in parts if part.role in ("fill", "dark", "trim") for p in part.points]
    return min(xs), min(ys), max(xs), max(ys)
