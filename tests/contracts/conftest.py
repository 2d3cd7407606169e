"""The `target` fixture: one function running in-process with its fakes (tests.contracts.apps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contracts.apps import Target, running

NO_DATABASE = frozenset({"embedder"})


def database_urls(request: pytest.FixtureRequest, name: str) -> tuple[str, str]:
    """Fresh databases for functions that use them (the embedder does not: no clone needed)."""
    if name in NO_DATABASE:
        return "postgresql:///unused", "postgresql:///unused"
    return request.getfixturevalue("production_url"), request.getfixturevalue("staging_url")


@pytest.fixture
async def target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                 tmp_path: Path) -> AsyncIterator[Target]:
    """Parametrize indirectly with the function's name."""
    production_url, staging_url = database_urls(request, request.param)
    async with running(request.param, monkeypatch, production_url=production_url,
                       staging_url=staging_url, tmp_path=tmp_path) as running_target:
        yield running_target
