"""Helpers shared by the benchmarks: figures, percentiles, a cached embedded PostgreSQL."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

CACHE = Path(__file__).parent / ".cache"


def figure(value: Any, unit: str, baseline: str | None = None, baseline_value: Any = None) -> dict[str, Any]:
    """One named figure for results.json."""
    entry: dict[str, Any] = {"value": value, "unit": unit}
    if baseline is not None:
        entry["baseline"] = baseline
        entry["baseline_value"] = baseline_value
    return entry


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=1000, method="inclusive")[max(0, min(998, round(q * 10) - 1))]


def print_table(title: str, rows: list[tuple[str, Any, str]]) -> None:
    """A readable two-column table of figures."""
    print(f"\n{title}")
    width = max(len(name) for name, _, _ in rows)
    for name, value, unit in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {name:<{width}}  {shown} {unit}")


def stop_cached_servers() -> list[Path]:
    """Stop every embedded server a benchmark started under bench/.cache (their data stays for
    the next run); returns the data dirs stopped."""
    from unde.db.embedded import stop_embedded

    stopped = []
    for pid_file in sorted(CACHE.rglob("pg/postmaster.pid")):
        data_dir = pid_file.parent.parent
        if stop_embedded(data_dir):
            stopped.append(data_dir)
    return stopped


def bench_database(cache_name: str, dbname: str, target: str) -> str:
    """A migrated database on an embedded server cached under bench/.cache/<cache_name>."""
    from unde.db.embedded import embedded_base_url, ensure_database, with_database
    from unde.db.migrate import apply_migrations
    from unde.settings import REPO_ROOT

    admin = embedded_base_url(CACHE / cache_name)
    ensure_database(admin, dbname)
    url = with_database(admin, dbname)
    apply_migrations(url, target, REPO_ROOT / "sql")  # type: ignore[arg-type]
    return url
