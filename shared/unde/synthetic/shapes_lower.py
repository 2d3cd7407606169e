"""Silhouettes of bottoms, shoes and bags (body coordinates, see :mod:`unde.synthetic.body`)."""

from __future__ import annotations

from unde.synthetic.body import (
    ANKLE_Y,
    CROTCH_Y,
    HIP_X,
    HIP_Y,
    SOLE_Y,
    WAIST_X,
    WAIST_Y,
    Look,
    Part,
    Point,
    Pose,
    ankle_x,
    hand_point,
    leg_x_at,
    shoulder_point,
)


def bottom_parts(look: Look, pose: Pose) -> list[Part]:
    """Jeans, trousers, shorts or skirt."""
    d, t = look.design, look.product_type
    top = WAIST_Y + 0.02
    wx = (WAIST_X + 0.006) * d.fit
    parts: list[Part] = []
    if t == "skirt":
        hem = 0.66 + (d.length - 1.0) * 0.12
        fl = 0.15 * d.fit
        parts.append(
            Part(
                "fill",
                (
                    (-wx, top),
                    (wx, top),
                    ((HIP_X + 0.01) * d.fit, HIP_Y),
                    (fl, hem),
                    (-fl, hem),
                    (-(HIP_X + 0.01) * d.fit, HIP_Y),
                ),
            )
        )
    else:
        hem = {"jeans": ANKLE_Y + 0.005, "trousers": ANKLE_Y, "shorts": 0.63}[t]
        hem = min(hem + (d.length - 1.0) * 0.05, ANKLE_Y + 0.01)
        half = (0.048 if t == "jeans" else 0.058 if t == "trousers" else 0.062) * d.fit
        pts: list[Point] = [(-wx, top), (wx, top), ((HIP_X + 0.01) * d.fit, HIP_Y)]
        for side in (1, -1):
            cx = leg_x_at(pose, side, hem)
            outer, inner = cx + side * half, cx - side * half
            if side == 1:
                pts += [(outer, hem), (inner, hem), (0.0, CROTCH_Y + 0.01)]
            else:
                pts += [(inner, hem), (outer, hem)]
        pts.append((-(HIP_X + 0.01) * d.fit, HIP_Y))
        parts.append(Part("fill", tuple(pts)))
        if t == "jeans":
            for side in (-1, 1):
                parts.append(
                    Part(
                        "line",
                        ((side * 0.02, top + 0.02), (side * 0.07, top + 0.07), (side * 0.095, top + 0.065)),
                        width=0.004,
                    )
                )
        if t == "trousers":
            for side in (-1, 1):
                parts.append(Part("line", ((side * 0.05, HIP_Y), (leg_x_at(pose, side, hem), hem)), width=0.003))
    parts.append(Part("dark", ((-wx, top), (wx, top), (wx * 1.01, top + 0.022), (-wx * 1.01, top + 0.022))))
    return parts


def shoes_parts(look: Look, pose: Pose) -> list[Part]:
    """A pair of shoes (front view)."""
    t = look.product_type
    top = {"sneakers": 0.89, "boots": 0.8, "loafers": 0.905}[t]
    parts: list[Part] = []
    for side in (-1, 1):
        cx = ankle_x(pose, side) + side * 0.012
        w_top, w_bot = (0.05 if t == "boots" else 0.056), 0.068
        upper = (
            (cx - w_top, top),
            (cx + w_top, top),
            (cx + w_bot, SOLE_Y - 0.04),
            (cx + w_bot - 0.006, SOLE_Y - 0.018),
            (cx - w_bot + 0.006, SOLE_Y - 0.018),
            (cx - w_bot, SOLE_Y - 0.04),
        )
        parts.append(Part("fill", upper))
        sole_role = "trim" if t == "sneakers" else "dark"
        parts.append(
            Part(
                sole_role,
                (
                    (cx - w_bot - 0.003, SOLE_Y - 0.022),
                    (cx + w_bot + 0.003, SOLE_Y - 0.022),
                    (cx + w_bot, SOLE_Y),
                    (cx - w_bot, SOLE_Y),
                ),
            )
        )
        if t == "sneakers":
            parts.append(Part("line", ((cx - 0.025, top + 0.025), (cx + 0.025, top + 0.025)), width=0.004))
            parts.append(Part("line", ((cx - 0.027, top + 0.045), (cx + 0.027, top + 0.045)), width=0.004))
        elif t == "loafers":
            parts.append(Part("line", ((cx - 0.04, top + 0.03), (cx + 0.04, top + 0.03)), width=0.006))
        else:
            parts.append(Part("line", ((cx - w_top, top + 0.02), (cx + w_top, top + 0.02)), width=0.005))
    return parts


def bag_parts(look: Look, pose: Pose) -> list[Part]:
    """A bag carried at the side (``pose.bag_side``)."""
    t, side = look.product_type, pose.bag_side
    hx, hy = hand_point(pose, side)
    w, h = {"tote": (0.19, 0.2), "crossbody": (0.18, 0.16), "backpack": (0.2, 0.25)}[t]
    cx = hx + side * 0.03
    top = hy + (0.035 if t == "tote" else 0.0)
    parts: list[Part] = []
    if t == "tote":
        parts.append(
            Part(
                "dark",
                (
                    (cx - 0.06, top + 0.005),
                    (cx - 0.045, hy - 0.01),
                    (cx + 0.045, hy - 0.01),
                    (cx + 0.06, top + 0.005),
                    (cx + 0.045, top + 0.005),
                    (cx + 0.035, hy + 0.008),
                    (cx - 0.035, hy + 0.008),
                    (cx - 0.045, top + 0.005),
                ),
            )
        )
        parts.append(
            Part(
                "fill",
                (
                    (cx - w / 2 + 0.01, top),
                    (cx + w / 2 - 0.01, top),
                    (cx + w / 2, top + h),
                    (cx - w / 2, top + h),
                ),
            )
        )
    elif t == "crossbody":
        sx, sy = shoulder_point(side)
        parts.append(Part("line", ((sx - side * 0.02, sy - 0.01), (cx - side * 0.07, top + 0.005)), width=0.006))
        parts.append(
            Part(
                "fill",
                (
                    (cx - w / 2, top + 0.015),
                    (cx - w / 2 + 0.015, top),
                    (cx + w / 2 - 0.015, top),
                    (cx + w / 2, top + 0.015),
                    (cx + w / 2, top + h),
                    (cx - w / 2, top + h),
                ),
            )
        )
        parts.append(
            Part(
                "dark",
                (
                    (cx - w / 2, top + 0.015),
                    (cx + w / 2, top + 0.015),
                    (cx + w / 2, top + 0.05),
                    (cx, top + 0.065),
                    (cx - w / 2, top + 0.05),
                ),
            )
        )
    else:
        parts.append(
            Part(
                "fill",
                (
                    (cx - w / 2 + 0.03, top - 0.05),
                    (cx + w / 2 - 0.03, top - 0.05),
                    (cx + w / 2, top),
                    (cx + w / 2, top + h - 0.05),
                    (cx - w / 2, top + h - 0.05),
                    (cx - w / 2, top),
                ),
            )
        )
        parts.append(
            Part(
                "dark",
                (
                    (cx - w / 2 + 0.03, top + 0.08),
                    (cx + w / 2 - 0.03, top + 0.08),
                    (cx + w / 2 - 0.03, top + h - 0.07),
                    (cx - w / 2 + 0.03, top + h - 0.07),
                ),
            )
        )
        parts.append(Part("line", ((cx - w / 2 + 0.03, top + 0.08), (cx + w / 2 - 0.03, top + 0.08)), width=0.004))
    if look.design.buttons:
        parts.append(Part("dot", ((cx, top + 0.06),), radius=0.007))
    return parts
