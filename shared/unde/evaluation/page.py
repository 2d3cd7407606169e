"""A minimal self-contained HTML page (inline CSS, inline SVG) and table helper."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

STYLE = """
body{font-family:sans-serif;margin:24px;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
.note{background:#fff6d6;border:1px solid #e6c84f;padding:8px 12px;margin:12px 0}
.plots{display:flex;flex-wrap:wrap;gap:16px}
.plots figure{margin:0}
"""


def cell(value: Any) -> str:
    """A table cell's text: ratios as given, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.0f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {cell(v)}" for k, v in value.items())
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table (values escaped)."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, sections: Sequence[str]) -> str:
    """The whole document; sections are trusted HTML fragments built by this package."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{''.join(sections)}</body></html>")


def plots(*svgs: str) -> str:
    """Charts side by side."""
    return "<div class='plots'>" + "".join(f"<figure>{svg}</figure>" for svg in svgs) + "</div>"
