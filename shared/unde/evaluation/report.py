"""`unde eval`'s report: configurations side by side as JSON and a self-contained HTML page.

A configuration's entry (`ConfigResult.as_json`) holds the scorecard summary, the latency
lists per step, the hit/miss score lists, the labelled garments (calibration input) and the
notes that qualify its figures — above all where Ximilar's answers came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from unde.evaluation.page import page, plots, table
from unde.evaluation.svg import Series, grouped_bars, histogram, xy_chart
from unde.pipeline.scorecard import Scorecard

SIMULATED = "simulated Ximilar (local fake)"

#: (summary key, row title) of the comparison table, in order.
ROWS = (
    ("photos", "photos"),
    ("garments", "ground-truth garments"),
    ("detection_recall", "detection recall (IoU ≥ 0.5)"),
    ("detection_precision", "detection precision"),
    ("category_accuracy", "category accuracy"),
    ("sku_eligible", "garments with SKU in catalog and in stock"),
    ("sku_hit_at_1", "SKU hit@1"),
    ("sku_hit_at_5", "SKU hit@5"),
    ("sku_hit_at_20", "SKU hit@20"),
    ("ranked_depth_max", "deepest ranked list seen"),
    ("tiers", "tiers"),
    ("exact_tier_precision", "exact-tier precision"),
    ("ximilar_search_share", "requests calling Ximilar search"),
    ("ximilar_tag_share", "requests calling Ximilar tagging"),
    ("credits_per_photo", "credits per photo (charged)"),
    ("credits_per_photo_if_ximilar", "credits per photo if Ximilar detected + boosted"),
)


@dataclass(slots=True)
class ConfigResult:
    """One configuration's scored run."""

    name: str
    env: dict[str, str]
    ximilar: str  # where Ximilar answers came from: "none", SIMULATED, "real"
    card: Scorecard
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready figures of this configuration."""
        return {"name": self.name, "env": self.env, "ximilar": self.ximilar, "notes": self.notes,
                "failures": self.failures, "summary": self.card.summary(),
                "step_ms": self.card.step_ms, "scores": self.card.score_lists(), "labels": self.card.labels}


def build(results: list[ConfigResult], ground_truth: str) -> dict[str, Any]:
    """The report as one dict."""
    return {"ground_truth": ground_truth, "configs": [r.as_json() for r in results]}


def _label(config: dict[str, Any]) -> str:
    return config["name"] + (" *" if config["ximilar"] == SIMULATED else "")


def html(report: dict[str, Any]) -> str:
    """The comparison page: table, notes, then the plots."""
    configs = report["configs"]
    names = [_label(c) for c in configs]
    rows = [(title, *(c["summary"].get(key) for c in configs)) for key, title in ROWS]
    steps = sorted({step for c in configs for step in c["summary"]["p50_ms"]})
    latency_rows = [(f"{step} p50 / p95 ms", *(
        f"{c['summary']['p50_ms'].get(step, '–')} / {c['summary']['p95_ms'].get(step, '–')}" for c in configs))
        for step in steps]
    sections = [f"<p>Ground truth: {escape(report['ground_truth'])}</p>"]
    if any(c["ximilar"] == SIMULATED for c in configs):
        sections.append(f"<p class='note'>* {SIMULATED}: Ximilar's wire format served by a local fake whose "
                        "search ranks by a 16×16 thumbnail. Call rates and credits are the pipeline's real "
                        "behaviour; quality figures of these columns are <b>not</b> Ximilar's quality.</p>")
    sections += ["<h2>Side by side</h2>", table(("", *names), rows + latency_rows)]
    for config in configs:
        for line in config["notes"] + [f"failed: {f}" for f in config["failures"]]:
            sections.append(f"<p>{escape(config['name'])}: {escape(line)}</p>")
    sections.append("<h2>Score distributions: shown top match right (hit) vs wrong (miss)</h2>")
    sections.append(plots(*(histogram({f"{_label(c)} hit": c["scores"][key]["hit"],
                                       f"{_label(c)} miss": c["scores"][key]["miss"]},
                                      f"{_label(c)}: {key}", key)
                            for c in configs for key in ("pgvector_top1_score", "final_top_score"))))
    sections.append("<h2>Latency per step and cost vs quality</h2>")
    latency = grouped_bars(steps, {f"{_label(c)} p50": [c["summary"]["p50_ms"].get(s) for s in steps]
                                   for c in configs}, "Latency per step (p50)", "ms")
    latency95 = grouped_bars(steps, {f"{_label(c)} p95": [c["summary"]["p95_ms"].get(s) for s in steps]
                                     for c in configs}, "Latency per step (p95)", "ms")
    cost = xy_chart([Series(_label(c), [(c["summary"]["credits_per_photo"] or 0.0,
                                         c["summary"]["sku_hit_at_5"] or 0.0)], line=False,
                            labels=[c["name"]]) for c in configs],
                    "Credits per photo vs SKU hit@5", "credits per photo (charged)", "SKU hit@5",
                    y_range=(0, 1.02))
    sections.append(plots(latency, latency95, cost))
    return page("UNDE recognition eval", sections)


def write(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write report.json, report.html and one labels-<config>.json per configuration (the
    input of `unde calibrate --labels`); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "report.json", out_dir / "report.html"]
    paths[0].write_text(json.dumps(report, indent=2))
    paths[1].write_text(html(report))
    for config in report["configs"]:
        path = out_dir / f"labels-{config['name']}.json"
        path.write_text(json.dumps({"config": config["name"], "labels": config["labels"]}, indent=2))
        paths.append(path)
    return paths


def format_table(report: dict[str, Any]) -> str:
    """The comparison as plain text for the terminal."""
    configs = report["configs"]
    width = max(len(title) for _, title in ROWS)
    lines = [f"{'':{width}}  " + "  ".join(f"{_label(c):>14}" for c in configs)]
    for key, title in ROWS:
        if key == "tiers":
            continue
        lines.append(f"{title:{width}}  " + "  ".join(f"{_short(c['summary'].get(key)):>14}" for c in configs))
    return "\n".join(lines)


def _short(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
