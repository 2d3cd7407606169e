"""The figure in *body coordinates*: proportions, poses, drawable parts.

Body coordinates: the standing figure's head top is at y = 0 and its soles at y = 1; x = 0 is
the body's vertical axis (negative = figure's right, image left). The same polygons are used
for flat lays (scaled to fill the frame), on-model shots and street photos, so a garment looks
the same everywhere and ground truth stays exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Protocol

from unde.synthetic.catalog import Design

Point = tuple[float, float]

HEAD_C: Final[Point] = (0.0, 0.068)
HEAD_RX: Final[float] = 0.052
HEAD_RY: Final[float] = 0.064
NECK_Y: Final[float] = 0.135
SHOULDER_Y: Final[float] = 0.165
SHOULDER_X: Final[float] = 0.118
WAIST_Y: Final[float] = 0.37
WAIST_X: Final[float] = 0.085
HIP_Y: Final[float] = 0.47
HIP_X: Final[float] = 0.105
CROTCH_Y: Final[float] = 0.53
KNEE_Y: Final[float] = 0.72
ANKLE_Y: Final[float] = 0.915
SOLE_Y: Final[float] = 0.997
ARM_LEN: Final[float] = 0.36


class Look(Protocol):
    """What a renderer needs to know about a garment (a catalog ``Sku`` or a street-only one)."""

    @property
    def category(self) -> str: ...
    @property
    def product_type(self) -> str: ...
    @property
    def colour(self) -> str: ...
    @property
    def secondary_colour(self) -> str: ...
    @property
    def material(self) -> str: ...
    @property
    def pattern(self) -> str: ...
    @property
    def design(self) -> Design: ...


@dataclass(frozen=True, slots=True)
class Pose:
    """Figure pose: arm angle from vertical (degrees, outward) and extra ankle spread."""

    arm_angle: float = 12.0
    leg_spread: float = 0.0
    bag_side: int = 1  # +1: bag at the figure's left (image right), -1: other side
    open_front: float = 0.0  # gap between outerwear panels (body units); 0 = closed


@dataclass(frozen=True, slots=True)
class Part:
    """One drawable piece of a garment.

    role: ``fill`` (pattern fill), ``dark`` (darker shade of the main colour, e.g. ribbing),
    ``trim`` (trim colour, e.g. soles), ``line`` (polyline detail, not part of the mask) or
    ``dot`` (button; ``points[0]`` is the centre).
    """

    role: str
    points: tuple[Point, ...]
    radius: float = 0.0
    width: float = 0.004


def limb_quad(start: Point, angle_deg: float, side: int, length: float, w0: float, w1: float) -> tuple[Point, ...]:
    """A tapered quad along a limb starting at ``start`` (angle from vertical, outward)."""
    a = math.radians(angle_deg)
    dx, dy = side * math.sin(a), math.cos(a)
    nx, ny = dy, -dx
    ex, ey = start[0] + dx * length, start[1] + dy * length
    return (
        (start[0] + nx * w0 / 2, start[1] + ny * w0 / 2),
        (start[0] - nx * w0 / 2, start[1] - ny * w0 / 2),
        (ex - nx * w1 / 2, ey - ny * w1 / 2),
        (ex + nx * w1 / 2, ey + ny * w1 / 2),
    )


def shoulder_point(side: int) -> Point:
    """Where the arm starts (side -1 = image left)."""
    return side * (SHOULDER_X - 0.012), SHOULDER_Y + 0.012


def hand_point(pose: Pose, side: int) -> Point:
    """Where the hand is for a pose."""
    sx, sy = shoulder_point(side)
    a = math.radians(pose.arm_angle)
    return sx + side * math.sin(a) * ARM_LEN, sy + math.cos(a) * ARM_LEN


def ankle_x(pose: Pose, side: int) -> float:
    """Horizontal position of an ankle."""
    return side * (0.058 + pose.leg_spread)


def leg_x_at(pose: Pose, side: int, y: float) -> float:
    """Centre line of a leg at height ``y`` (linear from hip to ankle)."""
    top_x, top_y = side * 0.055, CROTCH_Y - 0.06
    t = (y - top_y) / (ANKLE_Y - top_y)
    return top_x + (ankle_x(pose, side) - top_x) * t


def body_parts(pose: Pose) -> list[tuple[str, tuple[Point, ...]]]:
    """The figure as ``(kind, polygon)``; kind 'ellipse' polygons are (centre, radii)."""
    parts: list[tuple[str, tuple[Point, ...]]] = [
        ("ellipse", (HEAD_C, (HEAD_RX, HEAD_RY))),
        ("poly", ((-0.025, NECK_Y - 0.01), (0.025, NECK_Y - 0.01), (0.03, SHOULDER_Y), (-0.03, SHOULDER_Y))),
        (
            "poly",
            (
                (-SHOULDER_X, SHOULDER_Y),
                (SHOULDER_X, SHOULDER_Y),
                (HIP_X - 0.01, SHOULDER_Y + 0.09),
                (WAIST_X, WAIST_Y),
                (HIP_X, HIP_Y),
                (HIP_X * 0.9, CROTCH_Y),
                (-HIP_X * 0.9, CROTCH_Y),
                (-HIP_X, HIP_Y),
                (-WAIST_X, WAIST_Y),
                (-(HIP_X - 0.01), SHOULDER_Y + 0.09),
            ),
        ),
    ]
    for side in (-1, 1):
        parts.append(("poly", limb_quad(shoulder_point(side), pose.arm_angle, side, ARM_LEN, 0.05, 0.036)))
        hx, hy = hand_point(pose, side)
        parts.append(("ellipse", ((hx, hy + 0.01), (0.022, 0.03))))
        top = (side * 0.055, CROTCH_Y - 0.08)
        ax = ankle_x(pose, side)
        parts.append(
            (
                "poly",
                (
                    (top[0] - 0.05, top[1]),
                    (top[0] + 0.05, top[1]),
                    (ax + 0.026, ANKLE_Y + 0.01),
                    (ax - 0.026, ANKLE_Y + 0.01),
                ),
            )
        )
        parts.append(("ellipse", ((ax + side * 0.01, SOLE_Y - 0.03), (0.035, 0.03))))
    return parts
