"""Versioned, idempotent migrations from `sql/<target>/NNNN_name.sql`.

Each file runs once, in its own transaction, under an advisory lock (two processes starting
together do not race), and is recorded with its checksum in `schema_migrations`. The files
themselves use IF NOT EXISTS, so re-running them by hand is harmless too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psycopg

from unde.errors import ConfigError

Target = Literal["production", "staging"]
_LOCK_KEY = 0x756E6465  # "unde"


@dataclass(slots=True)
class MigrationReport:
    """What `apply_migrations` did to one database."""

    target: str
    applied: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)

    def summary(self) -> str:
        done = ", ".join(self.applied) if self.applied else "nothing new"
        return f"{self.target}: applied {done}; {len(self.already)} already applied"


def migration_files(sql_dir: Path, target: Target) -> list[Path]:
    """The target's migration files in version order."""
    folder = sql_dir / target
    if not folder.is_dir():
        raise ConfigError(f"SQL_DIR: no migrations folder {folder}")
    return sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def apply_migrations(conninfo: str, target: Target, sql_dir: Path) -> MigrationReport:
    """Apply every migration of `target` not yet recorded in the database."""
    report = MigrationReport(target)
    files = migration_files(sql_dir, target)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for path in files:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                row = conn.execute(
                    "SELECT checksum FROM schema_migrations WHERE name = %s", (path.name,)
                ).fetchone()
                if row is not None:
                    if row[0] != checksum(path):
                        raise ConfigError(
                            f"migration {target}/{path.name} changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    report.already.append(path.name)
                    continue
                conn.execute(path.read_text().encode())
                conn.execute(
                    "INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                    (path.name, checksum(path)),
                )
                report.applied.append(path.name)
    return report
