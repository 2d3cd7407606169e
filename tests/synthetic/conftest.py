"""Fixtures for the synthetic-data tests (DB fixtures come from tests/conftest.py)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

#: Fixed time base so availability and ground truth are reproducible.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    """The seeding time base used by the tests."""
    return NOW
