"""The orchestrator in-process with the console on, an app key, fake upstreams and real databases."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from PIL import Image

from tests.fakes.pipeline_upstreams import GATEWAY, RERANKER, FakeItem, FakeUpstreams, orchestrator_on
from tests.function_apps import load_function
from tests.pipeline import staging_rows

APP_KEY = "console-test-key-5d1e"
ITEMS = [FakeItem("outerwear", [("zara", "z1", 0.93), ("mango", "m1", 0.8), ("mango", "m2", 0.7)], confident=True)]
DEMO_PHOTO = "street-1-0000.jpg"


def jpeg(size: tuple[int, int] = (64, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 100, 60)).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_street(data_dir: Path) -> None:
    """A demo data dir's street photos: one listed and present, one listed but missing."""
    street = data_dir / "street"
    street.mkdir(parents=True)
    (street / DEMO_PHOTO).write_bytes(jpeg())
    photos = [{"file": DEMO_PHOTO, "mall": "Dubai Hills Mall"}, {"file": "street-1-0001.jpg", "mall": "x"}]
    (street / "ground_truth.json").write_text(json.dumps({"version": 1, "photos": photos}))


@dataclass
class Orchestrator:
    client: httpx.AsyncClient
    module: ModuleType
    fake: FakeUpstreams
    headers: dict[str, str]


def _environment(monkeypatch: pytest.MonkeyPatch, data_dir: Path, production_url: str, staging_url: str) -> None:
    for key, value in {"UNDE_SECRETS_DIR": "/nonexistent", "PRODUCTION_DB_URL": production_url,
                       "STAGING_DB_URL": staging_url, "DATA_DIR": str(data_dir),
                       "VISION_GATEWAY_URL": GATEWAY, "LLM_RERANKER_URL": RERANKER,
                       "APP_API_KEYS": f"other-key,{APP_KEY}", "CONSOLE_ENABLED": "true"}.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
async def orchestrator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, production_url: str,
                       staging_url: str) -> AsyncIterator[Orchestrator]:
    staging_rows.load(staging_url)
    write_street(tmp_path)
    _environment(monkeypatch, tmp_path, production_url, staging_url)
    app, module = load_function("orchestrator")
    fake = FakeUpstreams(list(ITEMS))
    async with orchestrator_on(module, app, fake) as client:
        yield Orchestrator(client, module, fake, {"x-api-key": APP_KEY})
