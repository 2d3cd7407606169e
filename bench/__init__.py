"""Benchmarks: `python -m bench [--quick] [--only NAME ...]` → bench/results.json."""
