"""Bounded load on loopback: step concurrency up to the breaking point, then a soak that samples
every function's memory (RSS of its process group) to show it does not grow."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.report import Row
from tests.reliability.scenarios import DEADLINE_MARGIN_S
from tests.reliability.stack import ReliabilityStack
from tests.reliability.traffic import Outcome, percentile, send_batch

UPSTREAM_LATENCY = {"ximilar_s": 0.3, "gemini_s": 0.4}  # typical answers of the real APIs (p50-ish)
GROWTH_LIMIT = 0.15  # last third's mean RSS may exceed the first third's by at most 15 %


@dataclass
class Step:
    concurrency: int
    outcomes: list[Outcome]
    rows: dict[str, int]
    wall_s: float

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes if not o.answered)

    @property
    def lost(self) -> int:
        return sum(1 for o in self.outcomes if self.rows.get(o.request_id, 0) != 1)

    @property
    def p99_s(self) -> float:
        return percentile([o.latency_s for o in self.outcomes], 99)

    @property
    def partial(self) -> int:
        return sum(1 for o in self.outcomes if o.partial)

    def row(self, label: str, deadline_s: float) -> Row:
        latencies = [o.latency_s for o in self.outcomes]
        answered = [o for o in self.outcomes if o.answered]
        problems = []
        if self.errors:
            problems.append(f"{self.errors} errors")
        if self.p99_s > deadline_s:
            problems.append(f"p99 {self.p99_s:.1f}s > hard deadline {deadline_s:.0f}s")
        if self.lost:
            problems.append(f"{self.lost} requests without exactly one log row")
        return Row(label, len(self.outcomes), len(answered), sum(1 for o in answered if o.degraded),
                   self.errors, self.lost, percentile(latencies, 50), self.p99_s, problems)


def group_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (psutil, else /proc)."""
    try:
        import psutil

        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except ImportError:
        status = Path(f"/proc/{pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return kb * 1024
    except Exception:
        return 0


@dataclass
class MemorySampler:
    """Samples every function's RSS in a thread until stopped."""

    pids: dict[str, int]
    every_s: float = 0.5
    samples: dict[str, list[int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.samples.setdefault(name, []).append(group_rss(pid))
            self._stop.wait(self.every_s)

    def growth(self) -> dict[str, tuple[float, float, float]]:
        """Per function: (first third's mean MiB, last third's mean MiB, relative growth)."""
        out = {}
        for name, values in self.samples.items():
            third = max(1, len(values) // 3)
            first, last = sum(values[:third]) / third, sum(values[-third:]) / third
            out[name] = (first / 2**20, last / 2**20, (last - first) / first if first else 0.0)
        return out


def run_step(stack: ReliabilityStack, concurrency: int, requests: int) -> Step:
    timeout_s = stack.config.hard_deadline_s + DEADLINE_MARGIN_S
    started = time.monotonic()
    outcomes = asyncio.run(send_batch(stack.url("orchestrator"), stack.photos, requests, concurrency, timeout_s))
    wall_s = time.monotonic() - started
    return Step(concurrency, outcomes, stack.row_counts([o.request_id for o in outcomes]), wall_s)


@dataclass
class LoadResult:
    rows: list[Row]
    notes: list[str]
    held: int  # the highest concurrency with zero errors and p99 under the soft deadline
    held_per_s: float  # recognitions/s at that level (0.0 when none held)


def run_load(stack: ReliabilityStack, levels: Sequence[int] = (1, 2, 4, 8), per_level: int = 3,
             soak_requests: int = 30, label: str = "") -> LoadResult:
    """Step up concurrency (`per_level` × c requests each) until a step has errors or its p99
    reaches the soft deadline (answers cut short: partial); then soak at the highest level that
    held, sampling RSS (`soak_requests` 0: no soak). Returns table rows, notes and the throughput
    at the breaking point."""
    stack.clear_faults()
    stack.ximilar.latency_s = UPSTREAM_LATENCY["ximilar_s"]
    stack.gemini.latency_s = UPSTREAM_LATENCY["gemini_s"]
    deadline_s = stack.config.hard_deadline_s
    soft_s = stack.config.soft_deadline_s
    rows: list[Row] = []
    notes: list[str] = []
    held, broke, held_per_s = 0, None, 0.0
    try:
        for level in levels:
            step = run_step(stack, level, max(4, per_level * level))
            rows.append(step.row(f"load{label}: concurrency {level}", deadline_s))
            notes.append(f"- load c={level}: {len(step.outcomes)} requests in {step.wall_s:.1f}s "
                         f"({len(step.outcomes) / step.wall_s:.2f} req/s), p50 "
                         f"{percentile([o.latency_s for o in step.outcomes], 50):.2f}s, p99 {step.p99_s:.2f}s, "
                         f"{step.errors} errors, {step.partial} partial (soft deadline)")
            if step.errors or step.p99_s >= soft_s:
                broke = level
                rows[-1].problems.clear()  # the breaking step is the expected finding, not a failure
                break
            held, held_per_s = level, len(step.outcomes) / step.wall_s
        notes.insert(0, f"- load{label}: sustained concurrency with zero errors and p99 under the soft deadline "
                        f"({soft_s:.0f}s): {held} ({held_per_s:.2f} recognitions/s); breaking point (errors, or p99 "
                        f"at the soft deadline: answers cut short): "
                        f"{broke if broke is not None else f'not reached up to {levels[-1]}'}")
        if not soak_requests:
            return LoadResult(rows, notes, held, held_per_s)
        soak_level = max(1, held)
        with MemorySampler(stack.pids()) as sampler:
            step = run_step(stack, soak_level, soak_requests)
        soak = step.row(f"soak: concurrency {soak_level}", deadline_s)
        growth = sampler.growth()
        for name, (first, last, rel) in sorted(growth.items()):
            notes.append(f"- RSS {name}: {first:.0f} → {last:.0f} MiB ({rel:+.1%}) over the soak")
            if rel > GROWTH_LIMIT and name != "image_server":
                soak.problems.append(f"{name} RSS grew {rel:+.0%} (first vs last third)")
        rows.append(soak)
    finally:
        stack.clear_faults()
    notes.insert(0, f"- upstream latency during load: Ximilar +{UPSTREAM_LATENCY['ximilar_s']}s, "
                    f"Gemini +{UPSTREAM_LATENCY['gemini_s']}s per call; machine: {os.cpu_count()} CPUs")
    return LoadResult(rows, notes, held, held_per_s)
