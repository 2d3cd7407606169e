"""The whole reliability suite (slow): every fault scenario, consumers killed while indexing, and
the bounded load test; every row of the table must keep its promises."""

from __future__ import annotations

import pytest

from tests.ports import port_shift
from tests.reliability import report
from tests.reliability.__main__ import run_suite


@pytest.mark.slow
def test_full_reliability_suite() -> None:
    rows, notes = run_suite(quick=True, log=print, offset=1650 + port_shift())  # beside a `make reliability` run
    print(report.render(rows, notes))
    broken = {row.scenario: row.problems for row in rows if not row.ok}
    assert not broken, broken
    assert any(row.scenario.startswith("indexing") for row in rows)
    assert any(row.scenario.startswith("soak") for row in rows)
