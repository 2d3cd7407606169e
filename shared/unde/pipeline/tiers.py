"""Step 4's outcome: which tier a garment's answer falls in, and how many matches it shows.

Spec: top combined score > CONFIDENCE_HIGH → `exact` (1 result); ≥ CONFIDENCE_MEDIUM →
`similar` (top 5); otherwise `style` — the attribute fallback answers instead.

Without a rerank score (reranker down, deadline) the search score is all there is, and search
cosines sit high for anything (0.85–0.97): on them `exact` needs the search gate's confidence
as well, otherwise the answer is at most `similar` (`tier_without_rerank`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

MatchType = Literal["exact", "similar", "style"]
#: Which score a tier came from: the reranker's, the search's (degraded), or none (no candidates).
TierBasis = Literal["rerank", "search", "none"]
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


def tier_without_rerank(top_score: float | None, search_confident: bool, high: float,
                        medium: float) -> MatchType:
    """The tier on a search score: `exact` only when the search gate was confident too."""
    tier = tier_for(top_score, high, medium)
    return "similar" if tier == "exact" and not search_confident else tier


def shown(ranked: Sequence[T], match_type: MatchType) -> list[T]:
    """The matches an `exact` or `similar` answer shows (style answers come from the fallback)."""
    if match_type == "exact":
        return list(ranked[:EXACT_COUNT])
    return list(ranked[:SIMILAR_COUNT])
