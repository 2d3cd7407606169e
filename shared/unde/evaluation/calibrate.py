"""Threshold recommendations from labelled garments (production feedback or an eval run).

One garment = one detected item of one request, with the gate's numbers (pgvector top-1 score
and margin), the final score of the shown top match, and up to two labels:

- `top1_right` — the first shown match was the garment's SKU;
- `shown_right` — the garment's SKU was among the shown matches.

From `user_feedback` (keyed by item id): `right_item`/`bought` → shown_right; top1_right too
unless the verdict names a SKU other than the shown top match; `wrong_item` → both false;
`dismissed` or no verdict → unlabelled. From an eval run the labels come from ground truth.

The gate (`unde.retrieval.gating`): confident ⇔ top1 ≥ CONFIDENCE_THRESHOLD and
margin ≥ MARGIN; a garment that is not confident calls Ximilar search (and, with
TAGGING_MODE=on_demand, Ximilar tagging). The tiers (`unde.pipeline.tiers`): final score
> CONFIDENCE_HIGH → exact (1 match shown); ≥ CONFIDENCE_MEDIUM → similar (5 shown).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from unde.errors import BadInput
from unde.pipeline.scorecard import CREDITS
from unde.retrieval.gating import TOLERANCE

THRESHOLDS = tuple(round(0.50 + 0.01 * i, 2) for i in range(50))   # 0.50 … 0.99
MARGINS = tuple(round(0.01 * i, 2) for i in range(31))              # 0.00 … 0.30
TIER_GRID = tuple(round(0.01 * i, 2) for i in range(100))           # 0.00 … 0.99
POSITIVE = frozenset({"right_item", "bought"})


@dataclass(frozen=True, slots=True)
class Garment:
    """One garment's scores and labels (None: unknown)."""

    pgvector_top1_score: float | None
    pgvector_margin: float | None
    final_top_score: float | None
    match_type: str | None = None
    top1_right: bool | None = None
    shown_right: bool | None = None
    requeried_ximilar: bool = False
    used_ximilar: bool = False


def _label(verdict: dict[str, Any] | None, shown_top: tuple[Any, Any] | None) -> tuple[bool | None, bool | None]:
    if not verdict or verdict.get("verdict") not in (*POSITIVE, "wrong_item"):
        return None, None
    if verdict["verdict"] == "wrong_item":
        return False, False
    named = (verdict.get("brand"), verdict.get("external_id"))
    top1 = named == (None, None) or named == shown_top
    return top1, True


def garments_from_rows(rows: Iterable[dict[str, Any]]) -> list[Garment]:
    """Garments of `recognition_requests` rows (search_results, final_matches, user_feedback)."""
    garments = []
    for row in rows:
        finals = {int(f["item_id"]): f for f in row.get("final_matches") or [] if "item_id" in f}
        feedback = row.get("user_feedback") or {}
        for search in row.get("search_results") or []:
            item_id = int(search.get("item_id", -1))
            final = finals.get(item_id, {})
            matches = final.get("matches") or []
            top = matches[0] if matches else {}
            top1, shown = _label(feedback.get(str(item_id)), (top.get("brand"), top.get("external_id"))
                                 if matches else None)
            garments.append(Garment(search.get("pgvector_top1_score"), search.get("pgvector_margin"),
                                    top.get("score"), final.get("match_type"), top1, shown,
                                    bool(search.get("requeried_ximilar")), bool(search.get("used_ximilar"))))
    return garments


def read_rows(production_url: str, days: float | None = None) -> list[dict[str, Any]]:
    """The log rows calibration needs, newest first (optionally only the last `days`)."""
    query = ("SELECT id, search_results, final_matches, user_feedback, items_detected "
             "FROM recognition_requests WHERE search_results IS NOT NULL")
    params: dict[str, Any] = {}
    if days is not None:
        query += " AND created_at >= now() - make_interval(secs => %(secs)s)"
        params["secs"] = days * 86400
    with psycopg.connect(production_url, row_factory=psycopg.rows.dict_row) as conn:
        return list(conn.execute(query + " ORDER BY created_at DESC", params).fetchall())


def garments_from_labels(path: Path) -> list[Garment]:
    """Garments of an eval run's `labels.json` (written by `unde eval`)."""
    try:
        data = json.loads(path.read_text())
        entries = data["labels"] if isinstance(data, dict) else data
        return [Garment(e.get("pgvector_top1_score"), e.get("pgvector_margin"), e.get("final_top_score"),
                        e.get("match_type"), e.get("top1_right"), e.get("shown_right"),
                        bool(e.get("requeried_ximilar")), bool(e.get("used_ximilar"))) for e in entries]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadInput(f"cannot read labels from {path}: {exc}", field="labels") from exc


def garments_per_photo(path: Path) -> float | None:
    """Labelled garments per photo of an eval run's labels (None when photos are not named)."""
    entries = json.loads(path.read_text())["labels"]
    photos = {entry.get("photo_id") for entry in entries} - {None}
    return len(entries) / len(photos) if photos else None


@dataclass(frozen=True, slots=True)
class GatePoint:
    """The gate at one (threshold, margin): how often Ximilar is called, how right the rest is."""

    threshold: float
    margin: float
    ximilar_rate: float
    precision: float | None
    confident_labelled: int


@dataclass(frozen=True, slots=True)
class TierPoint:
    """Precision of the answers at or above one score (labelled garments only)."""

    score: float
    precision: float | None
    support: int


def _array(values: Iterable[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def sweep_gate(garments: Sequence[Garment], thresholds: Sequence[float] = THRESHOLDS,
               margins: Sequence[float] = MARGINS) -> list[GatePoint]:
    """Every (threshold, margin) of the grid over all garments (rate) and labelled ones (precision)."""
    if not garments:
        raise BadInput("no garments to calibrate on", field="recognition_requests")
    top1 = _array(g.pgvector_top1_score for g in garments)
    gap = _array(g.pgvector_margin for g in garments)
    labelled = np.array([g.top1_right is not None for g in garments])
    right = np.array([bool(g.top1_right) for g in garments])
    points = []
    for threshold in thresholds:
        above = np.nan_to_num(top1, nan=-1.0) >= threshold - TOLERANCE
        for margin in margins:
            confident = above & (np.nan_to_num(gap, nan=-1.0) >= margin - TOLERANCE)
            judged = confident & labelled
            count = int(judged.sum())
            precision = float((judged & right).sum() / count) if count else None
            points.append(GatePoint(threshold, margin, round(float(1 - confident.mean()), 6),
                                    None if precision is None else round(precision, 6), count))
    return points


def recommend_gate(points: Sequence[GatePoint], *, target_ximilar_rate: float | None = None,
                   target_precision: float | None = None, min_support: int = 10) -> GatePoint | None:
    """The grid point meeting the target, or None when none does.

    Target call rate: the highest precision among points calling Ximilar at most that often
    (ties: lower rate, then lower threshold, lower margin). Target precision: the lowest call
    rate among points at least that precise (ties: higher precision, lower threshold, margin).
    Points with fewer than `min_support` labelled confident garments are not trusted.
    """
    if (target_ximilar_rate is None) == (target_precision is None):
        raise BadInput("give exactly one of target_ximilar_rate and target_precision", field="target")
    trusted = [p for p in points if p.precision is not None and p.confident_labelled >= min_support]
    if target_ximilar_rate is not None:
        fitting = [p for p in trusted if p.ximilar_rate <= target_ximilar_rate + TOLERANCE]
        return min(fitting, key=lambda p: (-(p.precision or 0), p.ximilar_rate, p.threshold, p.margin),
                   default=None)
    fitting = [p for p in trusted if (p.precision or 0) >= (target_precision or 0) - TOLERANCE]
    return min(fitting, key=lambda p: (p.ximilar_rate, -(p.precision or 0), p.threshold, p.margin),
               default=None)


def frontier(points: Sequence[GatePoint]) -> list[GatePoint]:
    """The best precision reachable at each call rate (the trade-off curve), by rising rate."""
    best: list[GatePoint] = []
    for point in sorted((p for p in points if p.precision is not None),
                        key=lambda p: (p.ximilar_rate, -(p.precision or 0))):
        if not best or (point.precision or 0) > (best[-1].precision or 0):
            best.append(point)
    return best


def tier_curve(garments: Sequence[Garment], grid: Sequence[float] = TIER_GRID) -> list[TierPoint]:
    """Exact-tier precision (top-1 right) of labelled garments with final score > each value."""
    scored = [(g.final_top_score, g.top1_right) for g in garments
              if g.final_top_score is not None and g.top1_right is not None]
    points = []
    for value in grid:
        chosen = [right for score, right in scored if score > value]
        points.append(TierPoint(value, round(sum(chosen) / len(chosen), 6) if chosen else None, len(chosen)))
    return points


def recommend_tiers(garments: Sequence[Garment], *, exact_precision: float, similar_precision: float,
                    min_support: int = 10, grid: Sequence[float] = TIER_GRID) -> dict[str, Any]:
    """CONFIDENCE_HIGH: the lowest value whose exact answers are top-1 right at least
    `exact_precision` of the time. CONFIDENCE_MEDIUM: the lowest value ≤ HIGH whose similar band
    [MEDIUM, HIGH] shows the right SKU among its matches at least `similar_precision` of the time."""
    high = next((p for p in tier_curve(garments, grid) if p.precision is not None
                 and p.support >= min_support and p.precision >= exact_precision - TOLERANCE), None)
    if high is None:
        return {"confidence_high": None, "confidence_medium": None, "exact": None, "similar": None}
    band = [(g.final_top_score, g.shown_right) for g in garments
            if g.final_top_score is not None and g.shown_right is not None and g.final_top_score <= high.score]
    medium: TierPoint | None = None
    for value in grid:
        if value > high.score:
            break
        chosen = [right for score, right in band if score >= value]
        if len(chosen) >= min_support and sum(chosen) / len(chosen) >= similar_precision - TOLERANCE:
            medium = TierPoint(value, round(sum(chosen) / len(chosen), 6), len(chosen))
            break
    return {"confidence_high": high.score, "exact": asdict(high),
            "confidence_medium": medium.score if medium else high.score,
            "similar": asdict(medium) if medium else None}


def monthly_credits(ximilar_rate: float, garments_per_request: float, requests_per_month: int, *,
                    requery_rate: float = 0.0, tag_on_demand: bool = True) -> dict[str, float]:
    """Expected Ximilar credits per month: a search (10) and, on demand, a tag call (15) per
    garment that is not confident, plus availability re-queries of confident ones (10)."""
    garments = garments_per_request * requests_per_month
    search_calls = garments * (ximilar_rate + (1 - ximilar_rate) * requery_rate)
    tag_calls = garments * ximilar_rate if tag_on_demand else garments
    return {"garments": round(garments), "search_calls": round(search_calls), "tag_calls": round(tag_calls),
            "credits": round(search_calls * CREDITS["search"] + tag_calls * CREDITS["tag"])}
