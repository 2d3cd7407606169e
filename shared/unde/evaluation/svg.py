"""Small self-contained SVG charts for the eval and calibration pages (no plotting library).

Every function returns one `<svg>` element as a string, safe to inline in HTML: text is
escaped, sizes are fixed, colours come from a fixed palette so configurations keep their
colour across plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
WIDTH, HEIGHT = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 34, 48


@dataclass(slots=True)
class Series:
    """One named set of points; `line` joins them, otherwise they are markers only."""

    name: str
    points: list[tuple[float, float]]
    line: bool = True
    labels: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Marker:
    """A highlighted point with a caption (e.g. the recommended threshold)."""

    x: float
    y: float
    caption: str


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.2f}".rstrip("0")


class _Frame:
    """Maps data coordinates to pixels and draws axes, grid and labels."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1.0
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1.0

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return HEIGHT - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)

    def axes(self, title: str, x_label: str, y_label: str, x_ticks: bool = True) -> list[str]:
        parts = [f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14" '
                 f'font-weight="bold">{escape(title)}</text>']
        for tick in _ticks(self.y0, self.y1):
            y = self.py(tick)
            parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e5e5e5"/>')
            parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                         f'{_fmt(tick)}</text>')
        if x_ticks:
            for tick in _ticks(self.x0, self.x1):
                x = self.px(tick)
                parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
                             f'font-size="11">{_fmt(tick)}</text>')
        parts.append(f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" '
                     f'stroke="#333"/>')
        parts.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#333"/>')
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle" font-size="12">'
                     f'{escape(x_label)}</text>')
        parts.append(f'<text x="14" y="{HEIGHT / 2}" text-anchor="middle" font-size="12" '
                     f'transform="rotate(-90 14 {HEIGHT / 2})">{escape(y_label)}</text>')
        return parts


def _svg(parts: list[str], legend: Sequence[str]) -> str:
    for index, name in enumerate(legend):
        y = TOP + 4 + 16 * index
        colour = PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{WIDTH - RIGHT - 150}" y="{y}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{WIDTH - RIGHT - 136}" y="{y + 9}" font-size="11">{escape(name)}</text>')
    body = "".join(parts)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">{body}</svg>')


def _range(values: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    span = (high - low) or max(abs(high), 1.0)
    return low - pad * span, high + pad * span


def xy_chart(series: Sequence[Series], title: str, x_label: str, y_label: str,
             x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
             markers: Sequence[Marker] = ()) -> str:
    """Lines and/or scatter markers, one colour per series, optional highlighted markers."""
    xs = [x for s in series for x, _ in s.points] + [m.x for m in markers]
    ys = [y for s in series for _, y in s.points] + [m.y for m in markers]
    frame = _Frame(x_range or _range(xs), y_range or _range(ys))
    parts = frame.axes(title, x_label, y_label)
    for index, one in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        coords = [(frame.px(x), frame.py(y)) for x, y in one.points]
        if one.line and len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for point, (x, y) in enumerate(coords):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{2.5 if one.line else 5}" fill="{colour}"/>')
            if point < len(one.labels):
                parts.append(f'<text x="{x + 7:.1f}" y="{y - 6:.1f}" font-size="11">'
                             f'{escape(one.labels[point])}</text>')
    for marker in markers:
        x, y = frame.px(marker.x), frame.py(marker.y)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="none" stroke="#000" stroke-width="2"/>')
        parts.append(f'<text x="{x + 9:.1f}" y="{y + 14:.1f}" font-size="11">{escape(marker.caption)}</text>')
    return _svg(parts, [s.name for s in series])


def histogram(groups: dict[str, Sequence[float]], title: str, x_label: str, bins: int = 20,
              x_range: tuple[float, float] = (0.0, 1.0)) -> str:
    """Overlaid histograms (counts per bin), one translucent colour per group."""
    low, high = x_range
    width = (high - low) / bins
    counts: dict[str, list[int]] = {}
    for name, values in groups.items():
        row = [0] * bins
        for value in values:
            row[min(bins - 1, max(0, int((value - low) / width)))] += 1
        counts[name] = row
    peak = max((c for row in counts.values() for c in row), default=0)
    frame = _Frame((low, high), (0.0, max(1.0, float(peak))))
    parts = frame.axes(title, x_label, "garments")
    for index, (_, row) in enumerate(counts.items()):
        colour = PALETTE[index % len(PALETTE)]
        for b, count in enumerate(row):
            if count:
                x, x_end = frame.px(low + b * width), frame.px(low + (b + 1) * width)
                y = frame.py(count)
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{x_end - x:.1f}" '
                             f'height="{frame.py(0) - y:.1f}" fill="{colour}" fill-opacity="0.45" '
                             f'stroke="{colour}"/>')
    return _svg(parts, [f"{name} (n={len(values)})" for name, values in groups.items()])


def grouped_bars(categories: Sequence[str], groups: dict[str, Sequence[float | None]], title: str,
                 y_label: str) -> str:
    """Bars per category, one bar per group side by side (None: no bar)."""
    values = [v for row in groups.values() for v in row if v is not None]
    frame = _Frame((0.0, float(max(1, len(categories)))), (0.0, max(values, default=1.0) * 1.1 or 1.0))
    parts = frame.axes(title, "", y_label, x_ticks=False)
    slot = (frame.px(1) - frame.px(0)) * 0.8
    bar = slot / max(1, len(groups))
    for c, category in enumerate(categories):
        left = frame.px(c) + (frame.px(1) - frame.px(0)) * 0.1
        parts.append(f'<text x="{left + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
                     f'font-size="11">{escape(category)}</text>')
        for g, row in enumerate(groups.values()):
            value = row[c] if c < len(row) else None
            if value is None:
                continue
            y = frame.py(value)
            parts.append(f'<rect x="{left + g * bar:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" '
                         f'height="{frame.py(0) - y:.1f}" fill="{PALETTE[g % len(PALETTE)]}"/>')
    return _svg(parts, list(groups))
