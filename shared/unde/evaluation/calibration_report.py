"""`unde calibrate`'s report: recommendations + trade-off curves as JSON and an HTML page."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path
from typing import Any

from unde.evaluation import calibrate as cal
from unde.evaluation.page import page, plots, table
from unde.evaluation.svg import Marker, Series, xy_chart


@dataclass(frozen=True, slots=True)
class Targets:
    """What the recommendation aims for."""

    ximilar_rate: float | None = None
    precision: float | None = None
    tier_precision: float = 0.9
    similar_precision: float = 0.6
    requests_per_month: int = 100_000
    min_support: int = 10
    tag_on_demand: bool = True


def build(garments: list[cal.Garment], targets: Targets, source: str,
          garments_per_request: float | None = None) -> dict[str, Any]:
    """All figures of a calibration as one JSON-ready dict."""
    points = cal.sweep_gate(garments)
    gate = cal.recommend_gate(points, target_ximilar_rate=targets.ximilar_rate,
                              target_precision=targets.precision, min_support=targets.min_support)
    plain = [g for g in garments if not g.used_ximilar]  # re-queries happen only to these
    requery_rate = sum(g.requeried_ximilar for g in plain) / len(plain) if plain else 0.0
    per_request = garments_per_request or 1.0
    tiers = cal.recommend_tiers(garments, exact_precision=targets.tier_precision,
                                similar_precision=targets.similar_precision, min_support=targets.min_support)
    labelled = sum(g.top1_right is not None for g in garments)
    report: dict[str, Any] = {
        "source": source,
        "garments": len(garments),
        "labelled": labelled,
        "garments_per_request": round(per_request, 3),
        "targets": asdict(targets),
        "gate": None if gate is None else {
            "CONFIDENCE_THRESHOLD": gate.threshold, "MARGIN": gate.margin,
            "ximilar_rate": gate.ximilar_rate, "precision": gate.precision,
            "confident_labelled": gate.confident_labelled,
            "credits_per_month": cal.monthly_credits(
                gate.ximilar_rate, per_request, targets.requests_per_month,
                requery_rate=requery_rate, tag_on_demand=targets.tag_on_demand)},
        "tiers": {"CONFIDENCE_HIGH": tiers["confidence_high"], "CONFIDENCE_MEDIUM": tiers["confidence_medium"],
                  "exact": tiers["exact"], "similar": tiers["similar"]},
        "requery_rate": round(requery_rate, 4),
        "frontier": [asdict(p) for p in cal.frontier(points)],
        "tier_curve": [asdict(p) for p in cal.tier_curve(garments)],
        "credits_curve": [
            {"ximilar_rate": p.ximilar_rate, "precision": p.precision,
             "credits_per_month": cal.monthly_credits(p.ximilar_rate, per_request, targets.requests_per_month,
                                                      requery_rate=requery_rate,
                                                      tag_on_demand=targets.tag_on_demand)["credits"]}
            for p in cal.frontier(points)],
    }
    return report


def garments_per_request(rows: list[dict[str, Any]]) -> float | None:
    """Mean garments per logged request."""
    counts = [len(row.get("search_results") or []) for row in rows]
    return statistics.fmean(counts) if counts else None


def html(report: dict[str, Any]) -> str:
    """The calibration page: recommendations, trade-off curve, tier precision curve."""
    gate, tiers = report["gate"], report["tiers"]
    frontier = report["frontier"]
    markers = [] if gate is None else [Marker(gate["ximilar_rate"], gate["precision"],
                                              f"T={gate['CONFIDENCE_THRESHOLD']}, M={gate['MARGIN']}")]
    curve = xy_chart([Series("best precision at each call rate",
                             [(p["ximilar_rate"], p["precision"]) for p in frontier])],
                     "Gate trade-off: Ximilar call rate vs precision of confident answers",
                     "share of garments calling Ximilar", "precision (top-1 right)",
                     x_range=(0, 1), y_range=(0, 1.02), markers=markers)
    tier_points = [p for p in report["tier_curve"] if p["precision"] is not None]
    tier_markers = [] if tiers["exact"] is None else [
        Marker(tiers["exact"]["score"], tiers["exact"]["precision"], f"HIGH={tiers['CONFIDENCE_HIGH']}")]
    tier_chart = xy_chart([Series("exact-tier precision", [(p["score"], p["precision"]) for p in tier_points])],
                          "Exact tier: precision of answers scoring above CONFIDENCE_HIGH",
                          "CONFIDENCE_HIGH", "precision (top-1 right)", x_range=(0, 1), y_range=(0, 1.02),
                          markers=tier_markers)
    credits = xy_chart([Series("credits per month", [(c["ximilar_rate"], c["credits_per_month"])
                                                     for c in report["credits_curve"]])],
                       f"Ximilar credits per month at {report['targets']['requests_per_month']:,} requests",
                       "share of garments calling Ximilar", "credits / month", x_range=(0, 1))
    targets = report["targets"]
    aim = (f"Ximilar call rate ≤ {targets['ximilar_rate']}" if targets["ximilar_rate"] is not None
           else f"precision of confident answers ≥ {targets['precision']}")
    rows = [("CONFIDENCE_THRESHOLD", None if gate is None else gate["CONFIDENCE_THRESHOLD"], aim),
            ("MARGIN", None if gate is None else gate["MARGIN"], aim),
            ("CONFIDENCE_HIGH", tiers["CONFIDENCE_HIGH"], f"exact-tier precision ≥ {targets['tier_precision']}"),
            ("CONFIDENCE_MEDIUM", tiers["CONFIDENCE_MEDIUM"],
             f"similar tier shows the right SKU ≥ {targets['similar_precision']}")]
    sections = [
        f"<p>Source: {escape(report['source'])} — {report['garments']} garments, {report['labelled']} labelled, "
        f"{report['garments_per_request']} garments per request.</p>",
        "<h2>Recommendation</h2>", table(("setting", "value", "target"), rows),
    ]
    if gate is None:
        sections.append("<p class='note'>No (threshold, margin) on the grid meets the target with enough "
                        f"labelled support (≥ {targets['min_support']} confident labelled garments).</p>")
    else:
        money = gate["credits_per_month"]
        sections.append(table(("Ximilar call rate", "precision", "search calls / month", "tag calls / month",
                               "credits / month"),
                              [(gate["ximilar_rate"], gate["precision"], money["search_calls"],
                                money["tag_calls"], money["credits"])]))
    sections.append(plots(curve, tier_chart, credits))
    return page("UNDE threshold calibration", sections)


def write(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write calibration.json and calibration.html; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "calibration.json", out_dir / "calibration.html"
    json_path.write_text(json.dumps(report, indent=2))
    html_path.write_text(html(report))
    return json_path, html_path
