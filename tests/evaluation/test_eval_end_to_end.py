"""`unde eval` end to end: seed, index, the real local topology per backend, the fake Ximilar.

Slow (seeding + indexing ~1–2 min) and uses the dev stack's fixed ports, so it runs under
`make reliability`/`make test-all`, not `make test`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from unde.cli import main
from unde.db.embedded import stop_embedded
from unde.evaluation.report import SIMULATED


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Not under tmp_path: the embedded server runs as another user that cannot enter pytest's
    # private tmp dirs (same reason as conftest's pg_admin_url).
    folder = Path(tempfile.mkdtemp(prefix="unde-eval-"))
    monkeypatch.setenv("DATA_DIR", str(folder))
    for name in ("PRODUCTION_DB_URL", "STAGING_DB_URL", "XIMILAR_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield folder
    stop_embedded(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_eval_compares_backends_on_the_synthetic_set(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["eval", "--backend", "pgvector,conditional", "--photos", "3", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    plain, conditional = report["configs"]
    assert (plain["name"], plain["ximilar"]) == ("pgvector", "none")
    assert (conditional["name"], conditional["ximilar"]) == ("conditional", SIMULATED)
    for config in (plain, conditional):
        summary = config["summary"]
        assert summary["photos"] == 3 and not config["failures"]
        assert summary["garments"] > 0 and summary["detection_recall"] > 0
        assert summary["ximilar_tag_share"] is not None          # log rows were read back
        assert summary["p95_ms"]["total"] >= summary["p50_ms"]["total"] > 0
    assert plain["summary"]["credits_per_photo"] == 0            # pgvector never pays Ximilar
    assert "simulated Ximilar (local fake)" in (out / "report.html").read_text()
    labels = json.loads((out / "labels-conditional.json").read_text())["labels"]
    assert labels and all("top1_right" in label for label in labels)
    # The eval's labels feed calibration.
    assert main(["calibrate", "--labels", str(out / "labels-conditional.json"), "--min-support", "1",
                 "--out", str(tmp_path / "cal")]) in (0, 1)
    assert (tmp_path / "cal" / "calibration.html").exists()
