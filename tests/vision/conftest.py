"""Synthetic street photos shared by the vision tests (rendered once per session, no DB)."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from unde.vision.evaluation import street_photos

STREET_SEED = 99
STREET_COUNT = 16


@pytest.fixture(scope="session")
def street_set() -> list[tuple[Image.Image, list[dict[str, Any]]]]:
    """Street photos with ground-truth items from the synthetic generator (fixed seed)."""
    return street_photos(STREET_SEED, STREET_COUNT)
