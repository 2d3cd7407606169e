"""The pgvector version the search needs (≥ 0.8: iterative index scans), checked at start-up.

`unde.retrieval.search` filters an IVFFlat scan by brand; before 0.8 such a scan stops after
its probed lists and a small brand's answer comes back short. The gateway refuses to start on
an older extension, naming the version found and how to upgrade.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from unde.errors import ConfigError

log = logging.getLogger(__name__)

MIN_VERSION: Final = (0, 8)
VERSION_SQL: Final = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
UPGRADE: Final = ("install pgvector ≥ 0.8 on the database server (e.g. the postgresql-NN-pgvector "
                  "package or the pgvector/pgvector image), then run ALTER EXTENSION vector UPDATE")


def as_array(value: Any) -> np.ndarray:
    """A pgvector value as float32 numpy (the adapters return numpy or `pgvector.Vector`)."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def parse_version(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def version_problem(found: str | None) -> str | None:
    """Why `found` (the extension's version, None: not installed) cannot serve, or None."""
    version = parse_version(found)
    if version is not None and version >= MIN_VERSION:
        return None
    return (f"the production database has pgvector {found or 'not installed'}; the search needs "
            f"≥ {'.'.join(map(str, MIN_VERSION))}: {UPGRADE}")


async def installed_version(conn: AsyncConnection[Any]) -> str | None:
    row = await (await conn.execute(VERSION_SQL)).fetchone()
    return None if row is None else str(row[0])


async def require_pgvector(pool: AsyncConnectionPool) -> str:
    """The installed version; ConfigError when it cannot serve."""
    async with pool.connection() as conn:
        found = await installed_version(conn)
    problem = version_problem(found)
    if problem is not None:
        raise ConfigError(problem)
    return str(found)


def installed_version_sync(conninfo: str, timeout_s: float) -> str | None:
    with psycopg.connect(conninfo, connect_timeout=max(1, int(timeout_s)), autocommit=True) as conn:
        row = conn.execute(VERSION_SQL).fetchone()
    return None if row is None else str(row[0])


def check_at_start(conninfo: str, timeout_s: float = 5.0, *,
                   read: Callable[[str, float], str | None] = installed_version_sync) -> None:
    """Start-up check: ConfigError (the process does not start) on a too-old pgvector; an
    unreachable database only warns (the pool retries and `require_pgvector` checks again)."""
    try:
        found = read(conninfo, timeout_s)
    except psycopg.Error as exc:
        log.warning("pgvector version not checked at start-up (database unreachable): %s", exc)
        return
    problem = version_problem(found)
    if problem is not None:
        raise ConfigError(problem)
