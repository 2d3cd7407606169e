"""The staging database the pipeline tests read availability from."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from tests.pipeline import staging_rows
from unde.db.pool import open_pool


@pytest.fixture
async def staging(staging_url: str) -> AsyncIterator[AsyncConnectionPool]:
    staging_rows.load(staging_url)
    pool = await open_pool(staging_url, name="staging")
    yield pool
    await pool.close()
