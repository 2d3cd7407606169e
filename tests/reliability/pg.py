"""A dedicated embedded PostgreSQL for the reliability run, which the suite may stop and start."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from unde.db.embedded import embedded_base_url, stop_embedded


@contextlib.contextmanager
def dedicated_server() -> Iterator[tuple[str, Path]]:
    """Start a fresh embedded server in its own data dir; yields (admin URL, data dir)."""
    data_dir = Path(tempfile.mkdtemp(prefix="unde-rel-pg-"))
    try:
        yield embedded_base_url(data_dir), data_dir
    finally:
        stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def restart_embedded(data_dir: Path, down_s: float) -> str:
    """Stop the server (fast shutdown: every session is cut), wait `down_s`, start it again on
    the same socket; returns its admin URL."""
    stop_embedded(data_dir)
    time.sleep(down_s)
    return embedded_base_url(data_dir)
