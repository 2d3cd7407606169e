"""`unde calibrate` on hand-made recognition_requests rows with known optimal thresholds.

Gate set (pgvector top-1, margin, verdict on the shown top match), 11 garments:

    1 0.95 0.20 right    5 0.85 0.10 wrong    9  0.60 0.01 wrong
    2 0.92 0.15 right    6 0.82 0.25 right    10 no candidates, no verdict
    3 0.90 0.03 wrong    7 0.75 0.05 wrong    11 0.99 0.30 dismissed (unlabelled)
    4 0.88 0.12 right    8 0.70 0.04 wrong

- Precision 1.0 needs {1,2,4,6} (+11) confident and 3,5,7,8,9 not: margin 0.11–0.12 does it at
  any threshold ≤ 0.82 → lowest grid point (0.50, 0.11); 6 of 11 call Ximilar.
- Call rate ≤ 0.5 needs ≥ 6 confident; the most precise such set is {1,2,4,5,6,11} (4/5 = 0.8),
  reached at margins 0.06–0.10 with threshold ≤ 0.82 → (0.50, 0.06); 5 of 11 call Ximilar.

Tier set (final top score, top-1 right, right SKU among shown), 10 garments:
a 0.95 ✓✓, b 0.93 ✓✓, c 0.91 ✗✗, d 0.90 ✓✓, e 0.87 ✓✓, f 0.80 ✗✓ (the shopper named the
2nd match), g 0.70 ✓✓, h 0.65 ✗✗, i 0.55 ✓✓, j 0.40 ✗✗.
- Exact precision ≥ 0.8: score > 0.80 gives {a..e} = 4/5; every lower value is below 0.8 → HIGH 0.80.
- Similar ≥ 0.7 among [MEDIUM, 0.80]: {f,g,h,i,j} = 3/5, {f,g,h,i} = 3/4 from 0.41 → MEDIUM 0.41.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from unde.cli import main
from unde.evaluation import calibrate as cal
from unde.evaluation import calibration_report
from unde.pipeline.request_log import INSERT_SQL, row_params

GATE = [
    (0.95, 0.20, "right_item"), (0.92, 0.15, "bought"), (0.90, 0.03, "wrong_item"),
    (0.88, 0.12, "right_item"), (0.85, 0.10, "wrong_item"), (0.82, 0.25, "right_item"),
    (0.75, 0.05, "wrong_item"), (0.70, 0.04, "wrong_item"), (0.60, 0.01, "wrong_item"),
    (None, None, None), (0.99, 0.30, "dismissed"),
]
# final score, verdict, the SKU the shopper named (None: none named)
TIERS = [
    (0.95, "right_item", None), (0.93, "bought", None), (0.91, "wrong_item", None),
    (0.90, "right_item", None), (0.87, "right_item", None), (0.80, "right_item", "S2"),
    (0.70, "right_item", None), (0.65, "wrong_item", None), (0.55, "bought", None), (0.40, "wrong_item", None),
]


def _record(items: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A log row with one garment per entry, and its user_feedback."""
    request_id = str(uuid.uuid4())
    search = [{"item_id": i, "pgvector_top1_score": it.get("top1"), "pgvector_margin": it.get("margin"),
               "pgvector_confident": False, "used_ximilar": False, "requeried_ximilar": False}
              for i, it in enumerate(items)]
    finals = [{"item_id": i, "match_type": "similar",
               "matches": [{"brand": "b", "external_id": f"S{k + 1}", "score": it.get("final", 0.5) - 0.01 * k}
                           for k in range(5)]} for i, it in enumerate(items)]
    feedback = {str(i): {"verdict": it["verdict"], **({"brand": "b", "external_id": it["named"]}
                                                     if it.get("named") else {})}
                for i, it in enumerate(items) if it.get("verdict")}
    record = {"id": request_id, "photo_url": "http://x/p.jpg", "search_results": search,
              "final_matches": finals, "items_detected": len(items)}
    return record, feedback


def _insert(url: str, records: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    with psycopg.connect(url) as conn:
        for record, feedback in records:
            conn.execute(INSERT_SQL, row_params(record))
            conn.execute("UPDATE recognition_requests SET user_feedback = %s WHERE id = %s",
                         (Jsonb(feedback), record["id"]))


def _gate_rows() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    # 11 garments over 5 requests (2, 2, 2, 2, 3 garments)
    items = [{"top1": t, "margin": m, "verdict": v} for t, m, v in GATE]
    return [_record(items[i:i + 2]) for i in range(0, 8, 2)] + [_record(items[8:])]


def _tier_rows() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [_record([{"top1": 0.9, "margin": 0.2, "final": f, "verdict": v, "named": n}]) for f, v, n in TIERS]


def test_gate_recommendations_from_the_log(production_url: str) -> None:
    _insert(production_url, _gate_rows())
    garments = cal.garments_from_rows(cal.read_rows(production_url))
    assert len(garments) == 11 and sum(g.top1_right is not None for g in garments) == 9
    points = cal.sweep_gate(garments)
    best = cal.recommend_gate(points, target_precision=1.0, min_support=2)
    assert best is not None and (best.threshold, best.margin) == (0.50, 0.11)
    assert best.ximilar_rate == pytest.approx(6 / 11, abs=1e-6) and best.precision == 1.0
    cheap = cal.recommend_gate(points, target_ximilar_rate=0.5, min_support=2)
    assert cheap is not None and (cheap.threshold, cheap.margin) == (0.50, 0.06)
    assert cheap.ximilar_rate == pytest.approx(5 / 11, abs=1e-6) and cheap.precision == 0.8
    assert cal.recommend_gate(points, target_precision=1.0, min_support=5) is None  # only 4 labelled


def test_frontier_rises_with_call_rate(production_url: str) -> None:
    _insert(production_url, _gate_rows())
    front = cal.frontier(cal.sweep_gate(cal.garments_from_rows(cal.read_rows(production_url))))
    rates = [p.ximilar_rate for p in front]
    precisions = [p.precision or 0.0 for p in front]
    assert rates == sorted(rates) and precisions == sorted(precisions) and precisions[-1] == 1.0


def test_tier_recommendations(production_url: str) -> None:
    _insert(production_url, _tier_rows())
    garments = cal.garments_from_rows(cal.read_rows(production_url))
    named = [g for g in garments if g.final_top_score == pytest.approx(0.80)]
    assert named[0].top1_right is False and named[0].shown_right is True
    tiers = cal.recommend_tiers(garments, exact_precision=0.8, similar_precision=0.7, min_support=2)
    assert tiers["confidence_high"] == 0.80 and tiers["exact"]["precision"] == 0.8
    assert tiers["confidence_medium"] == 0.41 and tiers["similar"]["precision"] == 0.75


def test_monthly_credits() -> None:
    assert cal.monthly_credits(0.5, 2.0, 1000) == {"garments": 2000, "search_calls": 1000,
                                                   "tag_calls": 1000, "credits": 25000}
    with_requery = cal.monthly_credits(0.5, 2.0, 1000, requery_rate=0.1, tag_on_demand=False)
    assert with_requery == {"garments": 2000, "search_calls": 1100, "tag_calls": 2000, "credits": 41000}


def test_cli_writes_report_and_page(production_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    _insert(production_url, _gate_rows())
    monkeypatch.setenv("PRODUCTION_DB_URL", production_url)
    monkeypatch.setenv("STAGING_DB_URL", production_url)
    code = main(["calibrate", "--target-precision", "1.0", "--min-support", "2", "--requests-per-month",
                 "1000", "--out", str(tmp_path)])
    assert code == 0
    stored = json.loads((tmp_path / "calibration.json").read_text())
    gate = stored["gate"]
    assert (gate["CONFIDENCE_THRESHOLD"], gate["MARGIN"]) == (0.50, 0.11)
    # 11 garments / 5 requests = 2.2 per request; 6/11 call Ximilar → 1200 searches + 1200 tags.
    assert gate["credits_per_month"] == {"garments": 2200, "search_calls": 1200, "tag_calls": 1200,
                                         "credits": 30000}
    page = (tmp_path / "calibration.html").read_text()
    assert page.count("<svg") == 3 and "Gate trade-off" in page and "T=0.5, M=0.11" in page
    assert "calibration.html" in capsys.readouterr().out


def test_cli_reads_eval_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = [{"pgvector_top1_score": t, "pgvector_margin": m, "final_top_score": t,
               "top1_right": v in ("right_item", "bought") if v in ("right_item", "bought", "wrong_item") else None,
               "shown_right": None} for t, m, v in GATE]
    (tmp_path / "labels.json").write_text(json.dumps({"labels": labels}))
    code = main(["calibrate", "--labels", str(tmp_path / "labels.json"), "--target-ximilar-rate", "0.5",
                 "--min-support", "2", "--out", str(tmp_path)])
    assert code == 0
    gate = json.loads((tmp_path / "calibration.json").read_text())["gate"]
    assert (gate["CONFIDENCE_THRESHOLD"], gate["MARGIN"]) == (0.50, 0.06)


def test_bad_labels_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "labels.json").write_text("not json")
    assert main(["calibrate", "--labels", str(tmp_path / "labels.json"), "--out", str(tmp_path)]) == 1
    assert "cannot read labels" in capsys.readouterr().err


def test_report_without_a_feasible_point_says_so() -> None:
    garments = [cal.Garment(0.9, 0.2, 0.9, "exact", False, False)] * 3
    built = calibration_report.build(garments, calibration_report.Targets(precision=0.9, min_support=1), "t")
    assert built["gate"] is None and "No (threshold, margin)" in calibration_report.html(built)
