"""Shared fixtures: a real embedded PostgreSQL 18 + pgvector 0.8 for the whole session.

Each test that asks for `production_url` / `staging_url` gets a fresh database cloned from a
template that already has the migrations applied (cloning takes milliseconds).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from unde.db.embedded import embedded_base_url, ensure_database, stop_embedded, with_database
from unde.db.migrate import apply_migrations
from unde.settings import REPO_ROOT

SQL_DIR = REPO_ROOT / "sql"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Admin URL of an embedded server that lives for the test session.

    Its data dir is not under pytest's tmp_path: pytest prunes old numbered tmp dirs, which
    would delete a running server's files when several pytest sessions run side by side.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="unde-pg-"))
    url = embedded_base_url(data_dir)
    yield url
    stop_embedded(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def _templates(pg_admin_url: str) -> dict[str, str]:
    names = {"production": "tpl_production", "staging": "tpl_staging"}
    for target, name in names.items():
        ensure_database(pg_admin_url, name)
        apply_migrations(with_database(pg_admin_url, name), target, SQL_DIR)  # type: ignore[arg-type]
    return names


def _clone(admin_url: str, template: str, prefix: str) -> Iterator[str]:
    name = f"{prefix}_{next(_counter)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)))
    yield with_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def production_url(pg_admin_url: str, _templates: dict[str, str]) -> Iterator[str]:
    """A fresh production database (sku_image_embeddings, recognition_requests, index_jobs)."""
    yield from _clone(pg_admin_url, _templates["production"], "prod")


@pytest.fixture
def staging_url(pg_admin_url: str, _templates: dict[str, str]) -> Iterator[str]:
    """A fresh staging database (raw_products, raw_stores, raw_availability)."""
    yield from _clone(pg_admin_url, _templates["staging"], "stag")


@pytest.fixture
def empty_db_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with no migrations applied."""
    name = f"empty_{next(_counter)}"
    ensure_database(pg_admin_url, name)
    yield with_database(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
