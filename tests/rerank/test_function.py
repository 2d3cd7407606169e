"""The llm_reranker function over HTTP (in-process ASGI): both providers and bad inputs."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from functions_framework.aio import create_asgi_app

from tests.fakes.gemini_server import API_KEY, FakeGemini
from tests.rerank.conftest import PhotoHost, jpeg
from tests.rerank.test_offline import MODEL, insert_photos, unit

SOURCE = "functions/llm_reranker/main.py"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
async def local_fn(monkeypatch: pytest.MonkeyPatch, production_url: str) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("RERANK_PROVIDER", "auto")
    monkeypatch.setenv("PRODUCTION_DB_URL", production_url)
    monkeypatch.setenv("EMBEDDER_URL", "http://127.0.0.1:9")  # nothing listens there
    app = create_asgi_app(target="handle", source=SOURCE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fn") as client:
        yield client


@pytest.fixture
async def gemini_fn(monkeypatch: pytest.MonkeyPatch, gemini: tuple[FakeGemini, str],
                    photo_host: PhotoHost) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("GEMINI_API_URL", f"{gemini[1]}/v1beta")
    monkeypatch.setenv("GEMINI_MAX_RETRIES", "1")
    monkeypatch.setenv("GEMINI_RETRY_DELAY_S", "0.01")
    monkeypatch.setenv("ALLOWED_IMAGE_HOSTS", photo_host.host)
    app = create_asgi_app(target="handle", source=SOURCE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fn") as client:
        yield client


def candidate(sku: str, score: float, urls: list[str] | None = None, **meta: Any) -> dict[str, Any]:
    return {"brand": "br", "external_id": sku, "score": score, "source": "pgvector",
            "image_urls": ["http://img/x.jpg"] if urls is None else urls, "metadata": meta}


async def test_local_health_and_metrics(local_fn: httpx.AsyncClient) -> None:
    health = (await local_fn.get("/healthz")).json()
    assert health["provider"] == "local" and health["weights"] == {"visual": 0.7, "semantic": 0.3}
    assert (await local_fn.get("/metrics")).status_code == 200


async def test_local_rerank_end_to_end(local_fn: httpx.AsyncClient, production_url: str) -> None:
    crop = unit(5)
    insert_photos(production_url, "br", "a", [unit(50), crop])
    insert_photos(production_url, "br", "b", [unit(51)])
    response = await local_fn.post("/rerank", json={
        "embedding": crop.tolist(), "model_version": MODEL, "tags": {"type": "coat"},
        "candidates": [candidate("b", 0.9, product_type="coat"), candidate("a", 0.5, product_type="coat")]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "local" and body["tokens"] is None
    assert [r["sku_id"] for r in body["ranked"]] == ["br/a", "br/b"]
    top = body["ranked"][0]
    assert top["score"] == pytest.approx(0.7 * top["visual"] + 0.3 * top["semantic"], abs=1e-5)


async def test_local_rerank_with_unreachable_embedder_degrades(local_fn: httpx.AsyncClient) -> None:
    response = await local_fn.post("/rerank", json={
        "image": {"base64": b64(jpeg("red"))}, "candidates": [candidate("a", 0.4), candidate("b", 0.8)]})
    assert response.status_code == 200, response.text
    ranked = response.json()["ranked"]
    assert [r["external_id"] for r in ranked] == ["b", "a"]
    assert "could not be embedded" in ranked[0]["reason"]


async def test_local_tag_is_honest(local_fn: httpx.AsyncClient) -> None:
    response = await local_fn.post("/tag", json={"image": {"base64": b64(jpeg("navy"))},
                                                 "hints": {"type": "coat", "color": "navy"}})
    body = response.json()
    assert response.status_code == 200, body
    assert body["season"] == "autumn-winter" and body["provider"] == "local"
    assert body["brand_style"] is None and "brand_style" in body["unknown"]
    bare = (await local_fn.post("/tag", json={"url": "http://example.invalid/x.jpg"})).json()
    assert bare["unknown"] == ["style", "occasion", "brand_style", "season"]


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"candidates": [candidate(str(i), 0.5) for i in range(21)]}, 422, "candidates"),
    ({"candidates": [{"brand": "b"}]}, 422, "candidates.0.external_id"),
    ({"candidates": [candidate("a", 7.0)]}, 422, "candidates.0.score"),
    ({"embedding": [0.1] * 3, "model_version": "m", "candidates": []}, 422, "embedding"),
    ({"embedding": [0.1] * 512, "candidates": []}, 422, "body"),
    ({"image": {"base64": "!!!"}, "candidates": "nope"}, 422, "candidates"),
    ({"image": {}, "candidates": []}, 422, "image"),
])
async def test_rerank_bad_inputs(local_fn: httpx.AsyncClient, body: dict[str, Any], status: int,
                                 field: str) -> None:
    response = await local_fn.post("/rerank", json=body)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


async def test_rerank_bad_bodies(local_fn: httpx.AsyncClient) -> None:
    assert (await local_fn.post("/rerank", content=b"{not json",
                                headers={"content-type": "application/json"})).status_code == 400
    assert (await local_fn.post("/rerank", content=b"x",
                                headers={"content-type": "text/plain"})).status_code == 415
    assert (await local_fn.post("/tag", json={})).status_code == 422
    bad_image = await local_fn.post("/tag", json={"image": {"base64": b64(b"not an image")}})
    assert bad_image.status_code in (415, 422)


async def test_empty_candidates_is_an_empty_result(local_fn: httpx.AsyncClient) -> None:
    response = await local_fn.post("/rerank", json={"candidates": []})
    assert response.status_code == 200 and response.json()["ranked"] == []


async def test_gemini_rerank_and_tag(gemini_fn: httpx.AsyncClient, gemini: tuple[FakeGemini, str],
                                     photo_host: PhotoHost) -> None:
    red = photo_host.add("red.jpg", jpeg((245, 5, 5)))
    blue = photo_host.add("blue.jpg", jpeg("blue"))
    health = (await gemini_fn.get("/healthz")).json()
    assert health["provider"] == "gemini" and health["model"] == "gemini-2.5-flash"
    response = await gemini_fn.post("/rerank", json={
        "image": {"base64": b64(jpeg("red"))}, "tags": {},
        "candidates": [candidate("blue", 0.9, [blue]), candidate("red", 0.5, [red]),
                       candidate("none", 0.99, [])]})
    body = response.json()
    assert response.status_code == 200, body
    # blue looks nothing like the crop and ties with the photo-less one; visual breaks the tie
    assert [r["external_id"] for r in body["ranked"]] == ["red", "blue", "none"]
    assert body["provider"] == "gemini" and body["tokens"]["prompt"] > 0
    tag = await gemini_fn.post("/tag", json={"image": {"base64": b64(jpeg((15, 15, 20)))}})
    assert tag.status_code == 200 and tag.json()["season"] == "autumn-winter"


async def test_gemini_down_is_503_naming_gemini(gemini_fn: httpx.AsyncClient,
                                                gemini: tuple[FakeGemini, str],
                                                photo_host: PhotoHost) -> None:
    gemini[0].fail_next(*["503"] * 4)
    red = photo_host.add("red.jpg", jpeg("red"))
    response = await gemini_fn.post("/rerank", json={
        "image": {"base64": b64(jpeg("red"))},
        "candidates": [candidate("a", 0.5, [red]), candidate("b", 0.4, [red])]})
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "upstream_unavailable" and body["service"] == "gemini"
    assert "visual comparisons failed" in body["message"]


async def test_gemini_rerank_needs_the_crop(gemini_fn: httpx.AsyncClient) -> None:
    response = await gemini_fn.post("/rerank", json={"candidates": [candidate("a", 0.5)]})
    assert response.status_code == 422 and response.json()["field"] == "image"


async def test_one_recognition_shares_one_retry_budget(gemini_fn: httpx.AsyncClient,
                                                       gemini: tuple[FakeGemini, str], photo_host: PhotoHost) -> None:
    """Issue 18.11 at the function's edge: /tag and /rerank of one request id draw retries from one
    budget (GEMINI_REQUEST_RETRIES, default 3), and malformed answers fail the rerank (18.12)."""
    fake = gemini[0]
    fake.fail_next(*["500"] * 4, *["malformed"] * 6)
    red = photo_host.add("red.jpg", jpeg("red"))
    headers = {"x-request-id": "rec-1"}
    for _ in range(2):
        tag = await gemini_fn.post("/tag", json={"image": {"base64": b64(jpeg("red"))}}, headers=headers)
        assert tag.status_code == 503, tag.text
    assert fake.request_count == 4  # 2 first attempts + 2 retries (GEMINI_MAX_RETRIES=1 per call)
    rerank = await gemini_fn.post("/rerank", headers=headers, json={
        "image": {"base64": b64(jpeg("red"))}, "candidates": [candidate("a", 0.5, [red]), candidate("b", 0.4, [red])]})
    message = rerank.json()["message"]
    assert rerank.status_code == 503 and "visual comparisons failed" in message
    # the malformed batch answer was the 5th failed attempt in a row (GEMINI_BREAKER_FAILURES): the
    # probe compare is refused by the open breaker instead of being sent
    assert fake.request_count == 4 + 1 and "circuit open" in message


async def test_gemini_calls_stop_at_the_callers_budget(gemini_fn: httpx.AsyncClient,
                                                       gemini: tuple[FakeGemini, str]) -> None:
    """Issue 18.9: the orchestrator's remaining budget (x-unde-budget-ms) bounds the Gemini call,
    not GEMINI_TIMEOUT_S: a Gemini answering after 3 s is given up inside the 1 s budget."""
    import re

    from unde.budget import BUDGET_HEADER

    gemini[0].fail_next("slow")
    response = await gemini_fn.post("/tag", json={"image": {"base64": b64(jpeg((15, 15, 20)))}},
                                    headers={BUDGET_HEADER: "1000"})
    assert response.status_code in (503, 504), response.text
    assert gemini[0].slow_s > 1  # the fake really is slower than the budget
    assert re.search(r"no answer within 0\.\d+s", response.json()["message"]), response.text
