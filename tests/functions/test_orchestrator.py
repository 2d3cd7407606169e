"""The orchestrator function over HTTP: inputs, streaming, feedback, the log row."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import psycopg
import pytest
from PIL import Image

from tests.fakes.pipeline_upstreams import GATEWAY, RERANKER, FakeItem, FakeUpstreams, orchestrator_on
from tests.function_apps import load_function
from tests.pipeline import staging_rows
from unde.pipeline.request_log import RequestLog

ITEMS = [FakeItem("outerwear", [("zara", "z1", 0.93), ("mango", "m1", 0.8), ("mango", "m2", 0.7)], confident=True)]


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 100, 60)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
async def orchestrator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, production_url: str,
                       staging_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, ModuleType, FakeUpstreams]]:
    staging_rows.load(staging_url)
    monkeypatch.setenv("PRODUCTION_DB_URL", production_url)
    monkeypatch.setenv("STAGING_DB_URL", staging_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VISION_GATEWAY_URL", GATEWAY)
    monkeypatch.setenv("LLM_RERANKER_URL", RERANKER)
    app, module = load_function("orchestrator")
    fake = FakeUpstreams(list(ITEMS))
    async with orchestrator_on(module, app, fake) as client:
        yield client, module, fake


def _rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, items_detected, photo_url, candidates_after_availability, user_feedback "
                            "FROM recognition_requests").fetchall()


async def _drain(module: ModuleType) -> RequestLog:
    runtime = await module.RUNTIME.get()
    await runtime.request_log.drain()
    return runtime.request_log


async def test_recognize_by_url_writes_one_log_row(orchestrator: Any, production_url: str) -> None:
    client, module, _ = orchestrator
    response = await client.post("/recognize", json={
        "photo_url": "https://cdn.example.com/p.jpg?X-Amz-Signature=secret", "user_mall": "Dubai Hills Mall"})

    assert response.status_code == 200
    body = response.json()
    assert body["items"][0]["match_type"] == "exact"
    assert body["request_id"] == response.headers["x-request-id"]
    await _drain(module)
    [(row_id, detected, photo_url, after, _)] = _rows(production_url)
    assert str(row_id) == body["request_id"]
    assert (detected, after) == (1, 3)
    assert photo_url == "https://cdn.example.com/p.jpg"  # signature stripped


async def test_recognize_raw_and_multipart_uploads(orchestrator: Any) -> None:
    client, _, fake = orchestrator
    raw = await client.post("/recognize?user_mall=Dubai%20Hills%20Mall", content=jpeg(),
                            headers={"content-type": "image/jpeg"})
    form = await client.post("/recognize", files={"image": ("p.jpg", jpeg(), "image/jpeg")},
                             data={"user_mall": "Dubai Hills Mall"})
    assert raw.status_code == 200 and form.status_code == 200
    sent = [body for key, body in fake.bodies if key == "gateway /detect"]
    assert base64.b64decode(sent[0]["image"]["base64"]) == jpeg()


@pytest.mark.parametrize(
    ("kwargs", "status", "field"),
    [
        ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "body"),
        ({"json": {"user_mall": "Dubai Hills Mall"}}, 422, "body"),
        ({"json": {"photo_url": "http://x/p.jpg", "image": {"url": "http://x/p.jpg"}}}, 422, "body"),
        ({"json": {"photo_url": "http://x/p.jpg", "user_mall": ""}}, 422, "user_mall"),
        ({"json": {"image": {"base64": "abc", "url": "http://x"}}}, 422, "image"),
        ({"content": b"GIF89 not really", "headers": {"content-type": "image/jpeg"}}, 415, "image"),
        ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 422, "image"),
        ({"files": {"other": ("p.jpg", b"x", "image/jpeg")}}, 422, "image"),
        ({"content": b"photo", "headers": {"content-type": "text/plain"}}, 415, "Content-Type"),
    ],
)
async def test_bad_input_is_a_clear_4xx(orchestrator: Any, kwargs: dict[str, Any], status: int, field: str) -> None:
    client, _, _ = orchestrator
    response = await client.post("/recognize", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["field"].startswith(field)


async def test_streamed_events_arrive_in_order(orchestrator: Any) -> None:
    client, _, _ = orchestrator
    events = []
    body = {"photo_url": "http://x/p.jpg", "user_mall": "Dubai Hills Mall"}
    async with client.stream("POST", "/recognize", json=body,
                             headers={"accept": "text/event-stream"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            elif line.startswith("data: ") and events[-1] == "candidates":
                assert json.loads(line.removeprefix("data: "))["candidates"][0]["stores"]
    assert events == ["detected", "candidates", "ranked", "done", "result"]


async def test_feedback_is_stored_once_per_item(orchestrator: Any, production_url: str) -> None:
    client, module, _ = orchestrator
    request_id = (await client.post("/recognize", json={"photo_url": "http://x/p.jpg"})).json()["request_id"]
    await _drain(module)

    first = await client.post("/feedback", json={"request_id": request_id, "item_id": 0, "verdict": "wrong_item"})
    second = await client.post("/feedback", json={"request_id": request_id, "item_id": 0, "verdict": "bought",
                                                  "brand": "zara", "external_id": "z1"})
    assert first.status_code == second.status_code == 200
    [(_, _, _, _, feedback)] = _rows(production_url)
    assert list(feedback) == ["0"] and feedback["0"]["verdict"] == "bought"

    unknown = await client.post("/feedback", json={"request_id": "00000000-0000-0000-0000-000000000000",
                                                   "item_id": 0, "verdict": "bought"})
    bad = await client.post("/feedback", json={"request_id": request_id, "item_id": 0, "verdict": "meh"})
    assert unknown.status_code == 404 and bad.status_code == 422 and bad.json()["field"] == "verdict"


async def test_log_survives_a_production_db_outage(orchestrator: Any, production_url: str, tmp_path: Path) -> None:
    client, module, _ = orchestrator
    runtime = await module.RUNTIME.get()
    working_pool = runtime.production
    broken = await __import__("unde.db.pool", fromlist=["open_pool"]).open_pool(
        production_url.replace("dbname=", "dbname=missing_"), name="broken", min_size=0)
    runtime.request_log._pool = broken

    response = await client.post("/recognize", json={"photo_url": "http://x/p.jpg"})
    log = await _drain(module)
    assert response.status_code == 200
    assert log.spooled == 1 and len(log.spooled_files()) == 1 and _rows(production_url) == []

    runtime.request_log._pool = working_pool  # the database is back
    assert await log.flush_spool() == 1
    assert len(_rows(production_url)) == 1 and log.spooled_files() == []
    await broken.close()


async def test_failed_detection_still_logs_exactly_one_row(orchestrator: Any, production_url: str) -> None:
    client, module, fake = orchestrator
    fake.fail = {"gateway /detect"}
    response = await client.post("/recognize", json={"photo_url": "http://x/p.jpg"})
    await _drain(module)
    assert response.status_code == 503 and response.json()["service"] == "vision-gateway"
    assert len(_rows(production_url)) == 1


async def test_app_key_and_rate_limit_guard_the_public_endpoint(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, production_url: str, staging_url: str) -> None:
    monkeypatch.setenv("PRODUCTION_DB_URL", production_url)
    monkeypatch.setenv("STAGING_DB_URL", staging_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VISION_GATEWAY_URL", GATEWAY)
    monkeypatch.setenv("LLM_RERANKER_URL", RERANKER)
    monkeypatch.setenv("APP_API_KEYS", "app-key-1")
    monkeypatch.setenv("RATE_LIMIT_BURST", "2")
    app, module = load_function("orchestrator")
    fake = FakeUpstreams(list(ITEMS))
    body = {"photo_url": "http://x/p.jpg", "user_id": "shopper-1"}
    async with orchestrator_on(module, app, fake) as client:
        anonymous = await client.post("/recognize", json=body)
        statuses = [(await client.post("/recognize", json=body, headers={"x-api-key": "app-key-1"})).status_code
                    for _ in range(3)]
        other_user = await client.post("/recognize", json={**body, "user_id": "shopper-2"},
                                       headers={"authorization": "Bearer app-key-1"})
        health = await client.get("/healthz")
        await (await module.RUNTIME.get()).request_log.drain()
    assert anonymous.status_code == 401
    assert statuses == [200, 200, 429]
    assert other_user.status_code == 200 and health.status_code == 200
