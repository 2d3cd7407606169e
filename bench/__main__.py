"""Run the project's benchmarks and merge their named figures into bench/results.json.

Every module listed in BENCHMARKS exposes `run(quick: bool) -> dict[str, dict]` returning
`{"name": {"value": x, "unit": "...", "baseline": "...", "baseline_value": y}}` (baseline
keys where a ratio is involved), measured against a baseline in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import stop_cached_servers

RESULTS = Path(__file__).parent / "results.json"
BENCHMARKS = (
    "availability",
    "orchestrator",
    "pgvector",
    "embedder",
    "indexing",
    "descriptor_quality",
    "vision_quality",
    "real_images",
    "rerank_quality",
    "rerank_gemini",
    "eval",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="the ~10-minute form")
    parser.add_argument("--only", nargs="*", default=None, help="run only these benchmarks")
    args = parser.parse_args(argv)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    failed = []
    for name in args.only or BENCHMARKS:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"== {name}: not present, skipped")
                continue
            raise
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            figures = module.run(quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        finally:
            stop_cached_servers()  # no embedded PostgreSQL outlives its benchmark
        results.update(figures)
        print(f"== {name}: {len(figures)} figures in {time.perf_counter() - started:.0f}s", flush=True)
    results["machine_cores"] = {"value": os.cpu_count(), "unit": "cores"}
    results["machine"] = {"value": f"{platform.machine()} {platform.processor() or ''}".strip(), "unit": ""}
    results["date"] = {"value": dt.date.today().isoformat(), "unit": ""}
    results["quick"] = {"value": args.quick, "unit": ""}
    RESULTS.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    print(f"wrote {RESULTS}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
