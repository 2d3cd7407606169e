"""Scoring recognitions against ground truth (the synthetic generator's, or real labels).

Ground truth format: `data_dir/street/ground_truth.json` — see `unde.synthetic.seed`.
A garment counts as found when a returned item overlaps it with IoU ≥ 0.5 (one-to-one).
SKU hits are counted for found garments whose SKU is in the catalog and in stock in the mall.

Hit@k looks at a garment's ranked list: the shown matches first, then — when the request's
`recognition_requests` row is given — the rest of the logged search shortlist
(`search_results[].top`). `ranked_depth_max` says how deep those lists went, so hit@20 is
never read as deeper than the data.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from unde.vision.evaluation import DetectionScore

#: What Ximilar would charge per call (the spec): detection per photo, search, tags per item.
CREDITS = {"detect": 5, "search": 10, "tag": 15}
HIT_DEPTHS = (1, 5, 20)

SkuKey = tuple[Any, Any]


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


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ranked_keys(item: dict[str, Any], shortlist: list[dict[str, Any]] | None = None) -> list[SkuKey]:
    """The garment's ranked SKUs: shown matches, then the logged shortlist (deduplicated)."""
    keys: list[SkuKey] = []
    for entry in [*item["matches"], *(shortlist or [])]:
        key = (entry.get("brand"), entry.get("external_id"))
        if key not in keys:
            keys.append(key)
    return keys


def _shortlists(record: dict[str, Any] | None) -> dict[int, list[dict[str, Any]]]:
    if not record:
        return {}
    return {int(entry["item_id"]): list(entry.get("top") or [])
            for entry in record.get("search_results") or [] if "item_id" in entry}


@dataclass(slots=True)
class Scorecard:
    """Running totals over recognized photos."""

    detection: DetectionScore = field(default_factory=DetectionScore)
    sku_eligible: int = 0
    hit_at_1: int = 0
    hit_at_5: int = 0
    hit_at_20: int = 0
    ranked_depth_max: int = 0
    tiers: Counter[str] = field(default_factory=Counter)
    exact_correct: int = 0
    credits: list[int] = field(default_factory=list)
    credits_would_be: list[int] = field(default_factory=list)
    step_ms: dict[str, list[float]] = field(default_factory=dict)
    ximilar_search_requests: int = 0
    ximilar_tag_requests: int = 0
    requests_with_record: int = 0
    #: Per found garment: its scores and whether the shown answer was right (calibration input).
    labels: list[dict[str, Any]] = field(default_factory=list)

    def add(self, truth: dict[str, Any], response: dict[str, Any],
            record: dict[str, Any] | None = None) -> None:
        """Score one photo's response (and optionally its log row) against its ground truth."""
        items = response["items"]
        pairs = self.detection.add(truth["items"], [(item["bbox"], item["category"]) for item in items])
        for item in items:
            self.tiers[item["match_type"]] += 1
        shortlists = _shortlists(record)
        for gi, di in pairs:
            item = items[di]
            self._score_match(truth, truth["items"][gi], item, shortlists.get(int(item["item_id"])))
        self.credits.append(int(response.get("credits") or 0))
        self.credits_would_be.append(credits_if_ximilar(response))
        if any((item.get("search") or {}).get("used_ximilar") or (item.get("search") or {}).get(
                "requeried_ximilar") for item in items):
            self.ximilar_search_requests += 1
        if record is not None:
            self.requests_with_record += 1
            self.ximilar_tag_requests += int(bool(record.get("used_ximilar_tagging")))
        for step, value in (response.get("timings_ms") or {}).items():
            if value is not None:
                self.step_ms.setdefault(step, []).append(float(value))

    def _score_match(self, photo: dict[str, Any], truth: dict[str, Any], item: dict[str, Any],
                     shortlist: list[dict[str, Any]] | None) -> None:
        sku = (truth.get("brand"), truth.get("external_id"))
        shown = [(m.get("brand"), m.get("external_id")) for m in item["matches"]]
        ranked = ranked_keys(item, shortlist)
        self.ranked_depth_max = max(self.ranked_depth_max, len(ranked))
        top1_right = sku[1] is not None and shown[:1] == [sku]
        if item["match_type"] == "exact" and top1_right:
            self.exact_correct += 1
        search = item.get("search") or {}
        self.labels.append({
            "photo_id": photo.get("photo_id"), "item_id": item["item_id"],
            "category": truth.get("category"), "match_type": item["match_type"],
            "pgvector_top1_score": search.get("pgvector_top1_score"),
            "pgvector_margin": search.get("pgvector_margin"),
            "pgvector_confident": search.get("pgvector_confident"),
            "used_ximilar": bool(search.get("used_ximilar")),
            "requeried_ximilar": bool(search.get("requeried_ximilar")),
            "final_top_score": item["matches"][0].get("score") if item["matches"] else None,
            "top1_right": top1_right, "shown_right": sku[1] is not None and sku in shown,
            "sku_eligible": bool(truth.get("in_catalog") and truth.get("available_in_mall")),
        })
        if not (truth.get("in_catalog") and truth.get("available_in_mall")):
            return
        self.sku_eligible += 1
        self.hit_at_1 += int(sku in ranked[:1])
        self.hit_at_5 += int(sku in ranked[:5])
        self.hit_at_20 += int(sku in ranked[:20])

    def score_lists(self) -> dict[str, dict[str, list[float]]]:
        """Scores of garments whose shown top match was right (hit) vs wrong (miss)."""
        lists: dict[str, dict[str, list[float]]] = {}
        for name in ("pgvector_top1_score", "final_top_score"):
            lists[name] = {"hit": [], "miss": []}
            for label in self.labels:
                if label[name] is not None:
                    lists[name]["hit" if label["top1_right"] else "miss"].append(float(label[name]))
        return lists

    def summary(self) -> dict[str, Any]:
        """The figures as a flat dict."""
        def ratio(num: int, den: int) -> float | None:
            return round(num / den, 3) if den else None

        photos = len(self.credits)
        return {
            "photos": photos,
            "garments": self.detection.ground_truth,
            "detection_recall": round(self.detection.recall, 3),
            "detection_precision": round(self.detection.precision, 3),
            "category_accuracy": round(self.detection.category_accuracy, 3),
            "sku_eligible": self.sku_eligible,
            "sku_hit_at_1": ratio(self.hit_at_1, self.sku_eligible),
            "sku_hit_at_5": ratio(self.hit_at_5, self.sku_eligible),
            "sku_hit_at_20": ratio(self.hit_at_20, self.sku_eligible),
            "ranked_depth_max": self.ranked_depth_max,
            "tiers": dict(self.tiers),
            "exact_tier_precision": ratio(self.exact_correct, self.tiers["exact"]),
            "ximilar_search_share": ratio(self.ximilar_search_requests, photos),
            "ximilar_tag_share": ratio(self.ximilar_tag_requests, self.requests_with_record),
            "credits_per_photo": round(statistics.fmean(self.credits), 2) if self.credits else None,
            "credits_per_photo_if_ximilar": (round(statistics.fmean(self.credits_would_be), 1)
                                             if self.credits_would_be else None),
            "p50_ms": {step: round(percentile(v, 50)) for step, v in self.step_ms.items()},
            "p95_ms": {step: round(percentile(v, 95)) for step, v in self.step_ms.items()},
        }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    tiers = ", ".join(f"{name} {count}" for name, count in sorted(summary["tiers"].items()))
    latency = ", ".join(f"{step} {ms}/{summary.get('p95_ms', {}).get(step, '-')} ms"
                        for step, ms in summary["p50_ms"].items())
    return "\n".join([
        f"photos {summary['photos']}, garments {summary['garments']}: found {summary['detection_recall']:.0%} "
        f"(precision {summary['detection_precision']:.0%}, category accuracy {summary['category_accuracy']:.0%})",
        f"SKU hits for {summary['sku_eligible']} garments in stock in the mall: "
        f"top-1 {summary['sku_hit_at_1']}, top-5 {summary['sku_hit_at_5']}, "
        f"top-20 {summary.get('sku_hit_at_20')} (ranked lists up to {summary.get('ranked_depth_max')} deep)",
        f"tiers: {tiers}; exact-tier precision {summary['exact_tier_precision']}",
        f"Ximilar credits per photo if it were used (conditional): {summary['credits_per_photo_if_ximilar']}",
        f"latency p50/p95 per step: {latency}",
    ])
