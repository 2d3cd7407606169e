"""`python -m tests.reliability [--quick]` (what `make reliability` runs): the whole suite.

Starts a dedicated embedded PostgreSQL and the real functions as processes with fake upstreams,
runs every fault scenario, the indexing crash test and the bounded load test, prints the table
and writes it to tests/reliability/last_run.md. Exits 1 when any promise was broken.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.ports import port_shift
from tests.reliability import report
from tests.reliability.indexing_chaos import run_indexing_chaos
from tests.reliability.load import LoadResult, run_load
from tests.reliability.pg import dedicated_server
from tests.reliability.scenarios import ScenarioResult, full_scenarios, run_scenario
from tests.reliability.stack import ReliabilityStack, StackConfig

BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results.json"
OFFSET = 1600 + port_shift()  # ports 9700–9704 and 9690: beside a dev stack (0) and the integration test (1000)


def scenario_row(result: ScenarioResult) -> report.Row:
    return report.Row(result.name, result.requests, result.answered, result.degraded, result.failed,
                      result.lost, result.p50_s, result.p99_s, list(result.problems),
                      result.gemini_calls_per_request)


def run_suite(quick: bool = False, log: Callable[[str], None] = print,
              offset: int = OFFSET) -> tuple[list[report.Row], list[str]]:
    """Every part of the suite on one stack; (table rows, notes)."""
    rows: list[report.Row] = []
    notes: list[str] = []
    requests, concurrency = (8, 2) if quick else (20, 2)
    with dedicated_server() as (admin_url, pg_dir), tempfile.TemporaryDirectory(prefix="unde-rel-") as tmp:
        config = StackConfig(admin_url, Path(tmp), offset, soft_deadline_s=15.0, hard_deadline_s=20.0,
                             street_photos=6)
        with ReliabilityStack.running(config) as stack:
            notes.append("- setup: " + ", ".join(f"{k} {v:.0f}s" for k, v in stack.setup_s.items()))
            notes.append(f"- deadlines: soft {config.soft_deadline_s:.0f}s (partial answers), hard "
                         f"{config.hard_deadline_s:.0f}s; client gives up at hard + 5s; {len(stack.photos)} "
                         f"street photos (1–4 garments each) sent in turn; fault scenarios at concurrency "
                         f"{concurrency}")
            for scenario in full_scenarios(pg_dir, requests, concurrency):
                started = time.monotonic()
                result = run_scenario(stack, scenario)
                rows.append(scenario_row(result))
                notes.append(f"- {result.name}: flags {dict(result.flags_seen) or '{}'}, max latency "
                             f"{result.max_s:.1f}s")
                log(f"{'ok ' if result.ok else 'BAD'} {result.name} ({time.monotonic() - started:.0f}s) "
                    f"{result.problems or ''}")
            chaos = run_indexing_chaos(stack, kills=2 if quick else 4)
            rows.append(chaos.row())
            notes.append(f"- indexing: {chaos.plan.images} catalog images, {chaos.kills} SIGKILLs, "
                         f"{chaos.rows} rows / {chaos.distinct_keys} distinct keys, jobs {chaos.jobs}, "
                         f"{chaos.wall_s:.0f}s")
            log(f"{'ok ' if not chaos.problems else 'BAD'} indexing chaos {chaos.problems or ''}")
            levels = (1, 2, 4) if quick else (1, 2, 4, 8)
            # the same-run baseline: the reranker in the pairwise mode (RERANK_BATCH=1), then the default
            stack.restart("llm_reranker", {"RERANK_BATCH": "1"}, sig=signal.SIGTERM)
            pairwise = run_load(stack, levels, per_level=3, soak_requests=0, label=" (RERANK_BATCH=1)")
            stack.restart("llm_reranker", sig=signal.SIGTERM)
            load = run_load(stack, levels, per_level=3, soak_requests=12 if quick else 30)
            rows += pairwise.rows + load.rows
            notes += pairwise.notes + load.notes
            log("load: " + "; ".join(load.notes[:2] + pairwise.notes[:1]))
            record_load_figure(load, pairwise)
    return rows, notes


def record_load_figure(load: LoadResult, pairwise: LoadResult) -> None:
    """`load_recognitions_per_s` (throughput at the breaking point) into bench/results.json,
    with the pairwise reranker's, measured in the same run, as its baseline."""
    results = json.loads(BENCH_RESULTS.read_text()) if BENCH_RESULTS.exists() else {}
    results["load_recognitions_per_s"] = {
        "value": round(load.held_per_s, 3),
        "unit": f"recognitions/s at the highest zero-error concurrency ({load.held}; reliability load run)",
        "baseline": f"RERANK_BATCH=1 (held concurrency {pairwise.held})",
        "baseline_value": round(pairwise.held_per_s, 3)}
    BENCH_RESULTS.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests per scenario and load step")
    args = parser.parse_args(argv)
    rows, notes = run_suite(args.quick, log=lambda line: print(line, flush=True))
    text = report.write(rows, notes)
    print()
    print(text)
    print(f"written to {report.LAST_RUN}")
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
