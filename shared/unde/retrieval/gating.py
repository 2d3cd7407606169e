"""The spec's confidence gate for pgvector results — the only place the rule is written.

    confident  ⇔  top1 ≥ CONFIDENCE_THRESHOLD  and  top1 − top2 ≥ MARGIN

Scores are cosine similarities of the best photo per SKU. With one candidate there is nothing
to confuse it with, so top2 counts as 0; with none, nothing is confident. A tolerance of 1e-9
keeps `0.9 − 0.8 ≥ 0.1` true despite binary floating point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Gate:
    """The gate's verdict, with the two numbers the calibration log keeps."""

    confident: bool
    top1: float | None
    margin: float | None


def gate_confidence(scores: Sequence[float], threshold: float, margin: float) -> Gate:
    """Apply the gate to per-SKU similarity scores (any order)."""
    if not scores:
        return Gate(confident=False, top1=None, margin=None)
    ordered = sorted(scores, reverse=True)
    top1 = float(ordered[0])
    top2 = float(ordered[1]) if len(ordered) > 1 else 0.0
    gap = top1 - top2
    confident = top1 >= threshold - TOLERANCE and gap >= margin - TOLERANCE
    return Gate(confident=confident, top1=top1, margin=gap)
