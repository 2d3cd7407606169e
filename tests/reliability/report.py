"""The reliability table: one row per scenario, printed and written to `last_run.md`."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

LAST_RUN = Path(__file__).with_name("last_run.md")
HEADER = ("scenario", "requests", "answered", "degraded", "failed", "lost records", "p50 s", "p99 s",
          "gemini calls/req", "ok")


@dataclass
class Row:
    """One line of the table (a fault scenario, a load step, the indexing run)."""

    scenario: str
    requests: int
    answered: int
    degraded: int
    failed: int
    lost: int
    p50_s: float | None
    p99_s: float | None
    problems: list[str] = field(default_factory=list)
    gemini_calls_per_request: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def cells(self) -> tuple[str, ...]:
        def seconds(value: float | None) -> str:
            return "–" if value is None else f"{value:.2f}"
        return (self.scenario, str(self.requests), str(self.answered), str(self.degraded), str(self.failed),
                str(self.lost), seconds(self.p50_s), seconds(self.p99_s),
                "–" if self.gemini_calls_per_request is None else f"{self.gemini_calls_per_request:.1f}",
                "yes" if self.ok else "NO")


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def render(rows: Sequence[Row], notes: Sequence[str]) -> str:
    """The whole report: table, notes (setup, load figures, memory), and every problem found."""
    problems = [f"- {row.scenario}: {problem}" for row in rows for problem in row.problems]
    parts = [f"# Reliability run — {time.strftime('%Y-%m-%d %H:%M')} on {platform.node() or 'host'} "
             f"({platform.machine()}, Python {platform.python_version()})", "", markdown_table(rows), ""]
    if notes:
        parts += [*notes, ""]
    parts += ["Problems:" if problems else "Problems: none.", *problems, ""]
    return "\n".join(parts)


def write(rows: Sequence[Row], notes: Sequence[str], path: Path = LAST_RUN) -> str:
    text = render(rows, notes)
    path.write_text(text)
    return text
