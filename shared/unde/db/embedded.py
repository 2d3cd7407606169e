"""The local default database: one embedded PostgreSQL 16 + pgvector (PyPI `pgserver`).

It holds two databases, production and staging, so the code always keeps two connections
exactly as in production, where they are two servers. Real servers are used instead when
`PRODUCTION_DB_URL` / `STAGING_DB_URL` are set.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

log = logging.getLogger(__name__)

PRODUCTION_DB = "unde_production"
STAGING_DB = "unde_staging"


@dataclass(frozen=True, slots=True)
class DatabaseUrls:
    """Where the two databases are."""

    production: str
    staging: str


def embedded_base_url(data_dir: Path) -> str:
    """Start (or attach to) the embedded server under `data_dir/pg`; its admin URL."""
    import pgserver  # imported lazily: production images do not ship the embedded server

    pgdata = data_dir / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs complains about XDG_RUNTIME_DIR
        server = pgserver.get_server(pgdata, cleanup_mode=None)
    return str(server.get_uri())


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


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    import os

    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    pgdata = data_dir / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return False
    # pgserver runs postgres as the `pgserver` system user when we are root.
    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    return True


def restart_embedded(data_dir: Path) -> None:
    """Restart the embedded server in place (same options), e.g. after ALTER SYSTEM."""
    import os

    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=data_dir / "pg", user=user, timeout=120)


def resolve_urls(production: str | None, staging: str | None, data_dir: Path) -> DatabaseUrls:
    """Configured URLs win; a missing one falls back to the embedded server."""
    if production and staging:
        return DatabaseUrls(production, staging)
    embedded = start_embedded(data_dir)
    return DatabaseUrls(production or embedded.production, staging or embedded.staging)
