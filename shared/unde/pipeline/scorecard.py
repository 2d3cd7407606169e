"""Scoring recognitions against ground truth (the synthetic generator's, or real labels).

Ground truth format: `data_dir/street/ground_truth.json` — see `unde.synthetic.seed`.
A garment counts as found when a returned item overlaps it with IoU ≥ 0.5 (one-to-one).
SKU hits are counted for found garments whose SKU is in the catalog and in stock in the mall.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from unde.vision.evaluation import DetectionScore

#: What Ximilar would charge per call (the spec): detection per photo, search, tags per item.
CREDITS = {"detect": 5, "search": 10, "tag": 15}


def credits_if_ximilar(response: dict[str, Any]) -> int:
    """Credits this response would have cost with Ximilar as detector, booster and tagger."""
    total = CREDITS["detect"]
    for item in response["items"]:
        search = item.get("search") or {}
        if not search.get("pgvector_confident", False) or search.get("requeried_ximilar"):
            total += CREDITS["search"]
        if item.get("tags", {}).get("color") is not None and not search.get("pgvector_confident", False):
            total += CREDITS["tag"]
    return total


@dataclass(slots=True)
class Scorecard:
    """Running totals over recognized photos."""

    detection: DetectionScore = field(default_factory=DetectionScore)
    sku_eligible: int = 0
    hit_at_1: int = 0
    hit_at_5: int = 0
    tiers: Counter[str] = field(default_factory=Counter)
    exact_correct: int = 0
    credits: list[int] = field(default_factory=list)
    step_ms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, truth: dict[str, Any], response: dict[str, Any]) -> None:
        """Score one photo's response against its ground truth entry."""
        items = response["items"]
        pairs = self.detection.add(truth["items"], [(item["bbox"], item["category"]) for item in items])
        for item in items:
            self.tiers[item["match_type"]] += 1
        for gi, di in pairs:
            self._score_match(truth["items"][gi], items[di])
        self.credits.append(credits_if_ximilar(response))
        for step, value in (response.get("timings_ms") or {}).items():
            if value is not None:
                self.step_ms.setdefault(step, []).append(float(value))

    def _score_match(self, truth: dict[str, Any], item: dict[str, Any]) -> None:
        sku = (truth.get("brand"), truth.get("external_id"))
        found = [(m["brand"], m["external_id"]) for m in item["matches"]]
        if item["match_type"] == "exact" and found[:1] == [sku]:
            self.exact_correct += 1
        if not (truth.get("in_catalog") and truth.get("available_in_mall")):
            return
        self.sku_eligible += 1
        self.hit_at_1 += int(sku in found[:1])
        self.hit_at_5 += int(sku in found[:5])

    def summary(self) -> dict[str, Any]:
        """The figures as a flat dict."""
        def ratio(num: int, den: int) -> float | None:
            return round(num / den, 3) if den else None

        return {
            "photos": len(self.credits),
            "garments": self.detection.ground_truth,
            "detection_recall": round(self.detection.recall, 3),
            "detection_precision": round(self.detection.precision, 3),
            "category_accuracy": round(self.detection.category_accuracy, 3),
            "sku_eligible": self.sku_eligible,
            "sku_hit_at_1": ratio(self.hit_at_1, self.sku_eligible),
            "sku_hit_at_5": ratio(self.hit_at_5, self.sku_eligible),
            "tiers": dict(self.tiers),
            "exact_tier_precision": ratio(self.exact_correct, self.tiers["exact"]),
            "credits_per_photo_if_ximilar": round(statistics.fmean(self.credits), 1) if self.credits else None,
            "p50_ms": {step: round(statistics.median(v)) for step, v in self.step_ms.items()},
        }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    tiers = ", ".join(f"{name} {count}" for name, count in sorted(summary["tiers"].items()))
    latency = ", ".join(f"{step} {ms} ms" for step, ms in summary["p50_ms"].items())
    return "\n".join([
        f"photos {summary['photos']}, garments {summary['garments']}: found {summary['detection_recall']:.0%} "
        f"(precision {summary['detection_precision']:.0%}, category accuracy {summary['category_accuracy']:.0%})",
        f"SKU hits for {summary['sku_eligible']} garments in stock in the mall: "
        f"top-1 {summary['sku_hit_at_1']}, top-5 {summary['sku_hit_at_5']}",
        f"tiers: {tiers}; exact-tier precision {summary['exact_tier_precision']}",
        f"Ximilar credits per photo if it were used (conditional): {summary['credits_per_photo_if_ximilar']}",
        f"latency p50 per step: {latency}",
    ])
