"""The eval scorecard and report on a hand-made labelled set with figures worked out by hand."""

from __future__ import annotations

import json
import re
import xml.dom.minidom
from pathlib import Path
from typing import Any

import pytest

from tests.evaluation import handmade as hm
from unde.errors import BadInput
from unde.evaluation import report
from unde.evaluation.run import config_env, load_ground_truth, parse_backends, pick_photos
from unde.pipeline.scorecard import Scorecard, format_summary, percentile


def _card() -> Scorecard:
    card = Scorecard()
    card.add(hm.PHOTO_A, hm.RESPONSE_A, hm.RECORD_A)
    card.add(hm.PHOTO_B, hm.RESPONSE_B, hm.RECORD_B)
    return card


def test_summary_matches_the_hand_worked_figures() -> None:
    assert _card().summary() == hm.EXPECTED_SUMMARY


def test_hit_and_miss_score_lists() -> None:
    scores = _card().score_lists()
    assert {k: {h: sorted(v) for h, v in d.items()} for k, d in scores.items()} == hm.EXPECTED_SCORES


def test_labels_name_top1_and_shown_correctness() -> None:
    labels = {(label["photo_id"], label["item_id"]): label for label in _card().labels}
    assert set(labels) == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}   # found garments only
    assert labels[("a", 1)]["top1_right"] is False and labels[("a", 1)]["shown_right"] is True
    assert labels[("b", 0)]["shown_right"] is False and labels[("b", 1)]["top1_right"] is True
    assert labels[("a", 1)]["used_ximilar"] is True


def test_without_log_rows_hits_use_the_shown_matches_only() -> None:
    card = Scorecard()
    card.add(hm.PHOTO_A, hm.RESPONSE_A)
    card.add(hm.PHOTO_B, hm.RESPONSE_B)
    summary = card.summary()
    assert summary["sku_hit_at_20"] == 0.667 and summary["ranked_depth_max"] == 4
    assert summary["ximilar_tag_share"] is None
    assert "top-20 0.667" in format_summary(summary)


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0], 95) == 10.0
    assert percentile([0.0, 100.0], 95) == 95.0


def _report() -> dict[str, Any]:
    plain = report.ConfigResult("pgvector", {"SEARCH_BACKEND": "pgvector"}, "none", _card())
    simulated = report.ConfigResult("dual", {"SEARCH_BACKEND": "dual"}, report.SIMULATED, _card(),
                                    notes=["a note"])
    return report.build([plain, simulated], "handmade")


def test_report_json_html_and_labels_are_written(tmp_path: Path) -> None:
    paths = report.write(_report(), tmp_path)
    assert [p.name for p in paths] == ["report.json", "report.html", "labels-pgvector.json", "labels-dual.json"]
    stored = json.loads(paths[0].read_text())
    assert [c["summary"] for c in stored["configs"]] == [hm.EXPECTED_SUMMARY, hm.EXPECTED_SUMMARY]
    page = paths[1].read_text()
    # 2 configs × 2 score histograms, p50 and p95 latency bars, credits vs hit rate.
    assert page.count("<svg") == 7
    assert "simulated Ximilar (local fake)" in page and "dual *" in page
    assert "Credits per photo vs SKU hit@5" in page and "Latency per step (p95)" in page
    assert re.search(r"<td>SKU hit@20</td><td>1</td><td>1</td>", page)
    labels = json.loads(paths[2].read_text())
    assert labels["config"] == "pgvector" and len(labels["labels"]) == 4


def test_html_escapes_text() -> None:
    built = _report()
    built["configs"][0]["notes"] = ["<script>alert(1)</script>"]
    assert "<script>" not in report.html(built)


def test_terminal_table_lists_each_config() -> None:
    text = report.format_table(_report())
    assert "pgvector" in text and "dual *" in text and "0.667" in text


def test_backends_are_validated() -> None:
    assert parse_backends("pgvector, dual,pgvector") == ["pgvector", "dual"]
    with pytest.raises(BadInput, match="backend"):
        parse_backends("pgvector,faiss")


def test_config_env_points_ximilar_configs_at_the_fake_only() -> None:
    assert config_env("pgvector", "http://fake", "c", "t")["TAG_PROVIDER"] == "local"
    assert "XIMILAR_API_URL" not in config_env("pgvector", "http://fake", "c", "t")
    dual = config_env("dual", "http://fake", "c", "t")
    assert dual["XIMILAR_API_URL"] == "http://fake" and dual["DETECT_PROVIDER"] == "local"
    assert "XIMILAR_API_URL" not in config_env("dual", None, "", "")


def test_ground_truth_folder_and_photo_pick(tmp_path: Path) -> None:
    photos: list[dict[str, Any]] = [{"file": f"{i}.jpg", "mall": "M1" if i % 3 else "M2", "items": []}
                                    for i in range(6)]
    (tmp_path / "ground_truth.json").write_text(json.dumps({"version": 1, "photos": photos}))
    folder, loaded = load_ground_truth(tmp_path)
    assert folder == tmp_path and len(loaded) == 6
    picked = pick_photos(loaded, 3)
    assert [p["file"] for p in picked] == ["0.jpg", "1.jpg", "3.jpg"]   # malls in turn
    with pytest.raises(BadInput, match="ground truth"):
        load_ground_truth(tmp_path / "missing.json")


def test_every_plot_is_well_formed_svg_with_its_data() -> None:
    page = report.html(_report())
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    for svg in svgs:
        xml.dom.minidom.parseString(svg)
    # The pgvector-score histogram of the first config (bins of 0.05): hits 0.91 and 0.93 share
    # bin 18, misses 0.6 and 0.8 fall in bins 12 and 16 → 3 bars + 2 legend swatches.
    first = svgs[0]
    assert "pgvector hit (n=2)" in first and "pgvector miss (n=2)" in first
    assert first.count("<rect") == 3 + 2
    # The cost plot has one marker per configuration, labelled with its name.
    assert svgs[-1].count("<circle") == 2 and ">dual</text>" in svgs[-1]
