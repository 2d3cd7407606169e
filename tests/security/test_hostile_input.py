"""Hostile input from the attack run (issue 18, items 1–3 and 6) through the real endpoints.

Each function's JSON endpoints get bodies nested past the recursion limit and integers longer
than Python converts (4,300 digits): a 400/422 naming the problem, never a 500. Image URLs
with a bad port, an unclosed bracket or CR/LF are 422 everywhere a URL is taken, plain and
streamed. `/healthz` is a bare liveness answer unless the internal token comes with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.contracts.apps import FUNCTIONS, INTERNAL_TOKEN, Target, running

#: A JSON endpoint of each function and a body it accepts (nesting and numbers go into it).
JSON_ENDPOINTS = {
    "orchestrator": [("/recognize", "photo_url"), ("/feedback", "item_id")],
    "vision_gateway": [("/detect", "image"), ("/search", "image")],
    "llm_reranker": [("/rerank", "image"), ("/tag", "image")],
    "embedder": [("/embed", "image")],
    "indexer": [("/plan", "collection"), ("/embed_batch", "sku_ids")],
}
DEEP = b"[" * 10_000 + b"]" * 10_000
LONG_INTEGER = "9" * 5_000

BAD_URLS = ["http://127.0.0.1:99999/x.jpg", "http://images.example:abc/x.jpg", "http://[::1/x",
            "http://images.example/a\r\nx.jpg", "http://images.example/a\nX-Evil: 1"]


@pytest.mark.parametrize("target", FUNCTIONS, indirect=True)
async def test_deep_nesting_and_long_integers_are_named_4xx(target: Target) -> None:
    for path, key in JSON_ENDPOINTS[target.name]:
        bodies = {
            "deep body": DEEP,
            "deep value": b'{"%s": ' % key.encode() + DEEP + b"}",
            "deep with NUL": b'{"x": "\\u0000", "%s": ' % key.encode()
                             + b"[" * 990 + b"]" * 990 + b"}",
            "long integer": f'{{"{key}": {LONG_INTEGER}}}'.encode(),
            "long negative": f'{{"{key}": [-{LONG_INTEGER}]}}'.encode(),
        }
        for what, body in bodies.items():
            response = await target.client.post(path, content=body, headers={
                **target.headers, "content-type": "application/json"})
            where = f"{target.name} {path} {what}: {response.status_code} {response.text[:200]}"
            assert response.status_code in (400, 422), where
            message = response.json()["message"]
            assert "deeply" in message or "digits" in message or "nest" in message, where


@pytest.mark.parametrize("target", ["orchestrator"], indirect=True)
async def test_feedback_item_id_over_4300_digits_is_422(target: Target) -> None:
    body = ('{"request_id": "6f1c1f5e-6a53-4d8c-9d5a-3f3f8a0b8c11", "verdict": "bought", '
            f'"item_id": {LONG_INTEGER}}}').encode()
    response = await target.client.post("/feedback", content=body, headers={
        **target.headers, "content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["field"] == "body" and "4300 digits" in response.json()["message"]


@pytest.mark.parametrize("target", ["orchestrator"], indirect=True)
@pytest.mark.parametrize("stream", [False, True])
async def test_orchestrator_refuses_malformed_photo_urls_plain_and_streamed(
        target: Target, stream: bool) -> None:
    headers = {**target.headers, **({"accept": "text/event-stream"} if stream else {})}
    for url in BAD_URLS:
        for body in ({"photo_url": url}, {"image": {"url": url}}):
            response = await target.client.post("/recognize", json=body, headers=headers)
            where = f"{body} → {response.status_code} {response.text[:300]}"
            assert response.status_code == 422, where
            assert response.json()["field"] in ("photo_url", "image.url"), where
            assert "URL" in response.json()["message"], where


#: The endpoints that fetch an image URL, and the body that carries it.
FETCHING = {
    "vision_gateway": [("/detect", lambda url: {"url": url}), ("/detect", lambda url: {"image": {"url": url}})],
    "embedder": [("/embed", lambda url: {"image": {"url": url}}),
                 ("/embed", lambda url: {"images": [{"url": url}]})],
    "llm_reranker": [("/tag", lambda url: {"image": {"url": url}})],
}


@pytest.mark.parametrize("target", sorted(FETCHING), indirect=True)
async def test_malformed_image_urls_are_422_where_urls_are_fetched(target: Target) -> None:
    for path, shape in FETCHING[target.name]:
        for url in BAD_URLS:
            response = await target.client.post(path, json=shape(url), headers=target.headers)
            where = f"{target.name} {path} {json.dumps(shape(url))} → {response.status_code} {response.text[:300]}"
            assert response.status_code == 422, where
            assert "url" in response.json()["field"], where


@pytest.mark.parametrize("target", FUNCTIONS, indirect=True)
async def test_healthz_shows_details_only_with_the_internal_token(target: Target) -> None:
    anonymous = await target.client.get("/healthz")
    wrong = await target.client.get("/healthz", headers={"x-unde-internal-token": "guess"})
    insider = await target.client.get("/healthz", headers={"x-unde-internal-token": INTERNAL_TOKEN})
    minimal = {"service": target.name, "status": "ok"}
    assert anonymous.status_code == wrong.status_code == insider.status_code == 200
    assert anonymous.json() == wrong.json() == minimal
    assert insider.json().items() > minimal.items(), insider.json()


async def test_rotating_user_ids_hits_the_address_limit(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, production_url: str, staging_url: str) -> None:
    env = {"RATE_LIMIT_ADDRESS_PER_MINUTE": "1", "RATE_LIMIT_ADDRESS_BURST": "10"}
    async with running("orchestrator", monkeypatch, production_url=production_url,
                       staging_url=staging_url, tmp_path=tmp_path, env=env) as target:
        statuses = [(await target.client.post(
            "/recognize", json={"photo_url": "http://x/p.jpg", "user_id": f"rotating-{n}"},
            headers=target.headers)).status_code for n in range(30)]
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses
