"""Step 4's outcome: which tier a garment's answer falls in, and how many matches it shows.

Spec: top combined score > CONFIDENCE_HIGH → `exact` (1 result); ≥ CONFIDENCE_MEDIUM →
`similar` (top 5); otherwise `style` — the attribute fallback answers instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

MatchType = Literal["exact", "similar", "style"]
T = TypeVar("T")

EXACT_COUNT = 1
SIMILAR_COUNT = 5


def tier_for(top_score: float | None, high: float, medium: float) -> MatchType:
    """The tier of a garment whose best candidate scored `top_score` (None: no candidates)."""
    if top_score is None:
        return "style"
    if top_score > high:
        return "exact"
    if top_score >= medium:
        return "similar"
    return "style"


def shown(ranked: Sequence[T], match_type: MatchType) -> list[T]:
    """The matches an `exact` or `similar` answer shows (style answers come from the fallback)."""
    if match_type == "exact":
        return list(ranked[:EXACT_COUNT])
    return list(ranked[:SIMILAR_COUNT])
