"""The `make test` subset of the reliability suite: the real functions as processes, fake Ximilar
and Gemini on loopback, three faults that need no restart mid-load (Gemini timing out, Gemini
answering malformed JSON — flagged, and few Gemini calls per request — the staging DB unreachable
from the orchestrator), a handful of requests each. The full suite (every fault,
indexing crashes, load) runs under `make reliability` and `test_full.py` (slow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import port_shift
from tests.reliability.scenarios import Scenario, fast_scenarios, run_scenario
from tests.reliability.stack import ReliabilityStack, StackConfig

OFFSET = 1500 + port_shift()  # its own ports: beside a dev stack, the integration test and the full suite


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str) -> Iterator[ReliabilityStack]:
    config = StackConfig(pg_admin_url, Path(tmp_path_factory.mktemp("reliability")), OFFSET,
                         db_prefix="rel_fast", street_photos=3, index=False, ximilar_pilot_brands=3)
    with ReliabilityStack.running(config) as running:
        yield running
        print("reliability stack set-up (s):", {k: round(v, 1) for k, v in running.setup_s.items()})


@pytest.mark.parametrize("scenario", fast_scenarios(requests=4), ids=lambda s: s.name.replace(" ", "_"))
def test_fault_is_answered_flagged_and_logged_once(stack: ReliabilityStack, scenario: Scenario) -> None:
    result = run_scenario(stack, scenario)
    assert result.ok, result.problems
    assert result.answered == result.requests and result.lost == 0 and result.hung == 0
    assert result.max_s < stack.config.hard_deadline_s
    assert result.flags_seen.keys() & scenario.flags
