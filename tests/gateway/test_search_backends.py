"""Every SEARCH_BACKEND × pgvector confident/not × Ximilar ok/failing, through POST /search.

Real production DB (pgvector) with a handful of vectors, the fake embedder (vectors chosen by
the crop's colour) and the fake Ximilar (a collection filled through `insert`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.ximilar_server import FakeXimilar
from tests.gateway.conftest import jpeg, make_client
from tests.gateway.fake_embedder import MODEL_VERSION, FakeEmbedder
from tests.gateway.gateway_app import b64, gateway, insert_catalog, keys, near, unit

RED, BLUE = (200, 30, 30), (30, 30, 200)
RED_JPEG, BLUE_JPEG = jpeg(RED), jpeg(BLUE)


@pytest.fixture
def embedder() -> Iterator[FakeEmbedder]:
    with FakeEmbedder() as fake:
        fake.anchor(RED, unit((0, 1.0)))   # the red crop: confident (1.00 vs 0.50)
        fake.anchor(BLUE, unit((1, 1.0)))  # the blue crop: not confident (0.85 vs 0.83)
        yield fake


@pytest.fixture
def catalog(production_url: str) -> str:
    insert_catalog(production_url, [
        ("acme", "A1", unit((0, 1.0))), ("acme", "A2", near(0, 0.5, 7)),
        ("acme", "B1", near(1, 0.85, 8)), ("acme", "B2", near(1, 0.83, 9)),
    ])
    return production_url


async def fill_collection(fake: FakeXimilar) -> None:
    """Ximilar knows a red SKU, a blue SKU, and acme/B1 (shared with pgvector)."""
    async with httpx.AsyncClient() as http:
        client = make_client(fake, http)
        await client.insert([
            {"_id": "zeta/XR/0", "_base64": b64(RED_JPEG), "brand": "zeta", "external_id": "XR",
             "name": "red thing", "image_urls": ["http://x/xr.jpg"]},
            {"_id": "zeta/XB/0", "_base64": b64(BLUE_JPEG), "brand": "zeta", "external_id": "XB",
             "name": "blue thing", "image_urls": ["http://x/xb.jpg"]},
            {"_id": "acme/B1/1", "_base64": b64(jpeg((40, 40, 190))), "brand": "acme",
             "external_id": "B1", "name": "ignored: pgvector metadata wins"},
        ])


CASES = [
    (backend, confident, ximilar_ok)
    for backend in ("pgvector", "conditional", "dual", "ximilar")
    for confident in (True, False)
    for ximilar_ok in (True, False)
]


def expected_ximilar_call(backend: str, confident: bool) -> bool:
    return backend in ("dual", "ximilar") or (backend == "conditional" and not confident)


@pytest.mark.parametrize(("backend", "confident", "ximilar_ok"), CASES)
async def test_backend_policy(monkeypatch: pytest.MonkeyPatch, catalog: str, staging_url: str,
                              embedder: FakeEmbedder, fake_ximilar: FakeXimilar, backend: str,
                              confident: bool, ximilar_ok: bool) -> None:
    await fill_collection(fake_ximilar)
    if not ximilar_ok:
        fake_ximilar.fail_next("500", times=1000, path="visualKNN")
    crop = RED_JPEG if confident else BLUE_JPEG
    async with gateway(monkeypatch, production_url=catalog, staging_url=staging_url,
                       embedder_url=embedder.base_url, ximilar=fake_ximilar,
                       search_backend=backend) as (client, _):
        response = await client.post("/search", json={"image": {"base64": b64(crop)},
                                                      "top_k": 10})
    body: dict[str, Any] = response.json()
    calls = len(fake_ximilar.requests("visualKNN"))
    assert (calls > 0) == expected_ximilar_call(backend, confident)

    if backend == "ximilar":
        if not ximilar_ok:
            assert response.status_code == 503 and body["service"] == "ximilar"
            return
        assert response.status_code == 200
        assert body["embedding"] is None and body["pgvector_top1_score"] is None
        assert body["used_ximilar"] and body["credits"] == 10
        assert {c["source"] for c in body["candidates"]} == {"ximilar"}
        top = "XR" if confident else "XB"
        assert body["candidates"][0]["external_id"] == top
        assert body["candidates"][0]["score"] == pytest.approx(1.0, abs=0.02)
        return

    assert response.status_code == 200, body
    assert body["model_version"] == MODEL_VERSION and len(body["embedding"]) == 512
    assert body["pgvector_confident"] is confident
    if confident:
        assert body["pgvector_top1_score"] == pytest.approx(1.0, abs=1e-4)
        assert body["pgvector_margin"] == pytest.approx(0.5, abs=1e-3)
    else:
        assert body["pgvector_top1_score"] == pytest.approx(0.85, abs=1e-3)
        assert body["pgvector_margin"] == pytest.approx(0.02, abs=1e-3)

    used = expected_ximilar_call(backend, confident) and ximilar_ok
    assert body["used_ximilar"] is used
    assert body["credits"] == (10 if used else 0)
    failed = expected_ximilar_call(backend, confident) and not ximilar_ok
    assert body["degraded"] == (["ximilar_search_failed"] if failed else [])
    sources = {c["source"] for c in body["candidates"]}
    if not used:
        assert sources == {"pgvector"} and body["ximilar_top1_score"] is None
        return
    assert body["ximilar_top1_score"] == pytest.approx(1.0, abs=0.02)
    found = keys(body)
    if confident:
        assert found[0] == ("acme", "A1", "pgvector")  # 1.0 from pgvector
        assert ("zeta", "XR", "ximilar") in found
    else:
        # Ximilar's near-identical hit outranks pgvector's 0.85; acme/B1 came from both.
        assert found[0] == ("zeta", "XB", "ximilar")
        b1 = next(c for c in body["candidates"] if c["external_id"] == "B1")
        assert b1["source"] == "both"
        assert b1["metadata"]["name"] == "acme B1"  # catalog metadata from pgvector
        assert b1["score"] > 0.85  # the better of the two scores


async def test_force_ximilar_requery(monkeypatch: pytest.MonkeyPatch, catalog: str,
                                     staging_url: str, embedder: FakeEmbedder,
                                     fake_ximilar: FakeXimilar) -> None:
    await fill_collection(fake_ximilar)
    async with gateway(monkeypatch, production_url=catalog, staging_url=staging_url,
                       embedder_url=embedder.base_url, ximilar=fake_ximilar) as (client, _):
        body = (await client.post("/search", json={"image": {"base64": b64(RED_JPEG)},
                                                   "force_ximilar": True})).json()
    assert body["pgvector_confident"] is True and body["used_ximilar"] is True


@pytest.mark.parametrize(("backend", "status", "degraded"), [
    ("conditional", 200, ["embedder_unavailable"]),
    ("dual", 200, ["embedder_unavailable"]),
    ("pgvector", 503, None),
])
async def test_embedder_down(monkeypatch: pytest.MonkeyPatch, catalog: str, staging_url: str,
                             embedder: FakeEmbedder, fake_ximilar: FakeXimilar, backend: str,
                             status: int, degraded: list[str] | None) -> None:
    await fill_collection(fake_ximilar)
    embedder.down = True
    async with gateway(monkeypatch, production_url=catalog, staging_url=staging_url,
                       embedder_url=embedder.base_url, ximilar=fake_ximilar,
                       search_backend=backend) as (client, _):
        response = await client.post("/search", json={"image": {"base64": b64(RED_JPEG)}})
    body = response.json()
    assert response.status_code == status, body
    if degraded is None:
        assert "embedder" in body["message"] and "no Ximilar fallback" in body["message"]
        return
    assert body["degraded"] == degraded and body["used_ximilar"] is True
    assert body["embedding"] is None
    assert keys(body)[0] == ("zeta", "XR", "ximilar")


async def test_ximilar_timeout_degrades(monkeypatch: pytest.MonkeyPatch, catalog: str,
                                        staging_url: str, embedder: FakeEmbedder,
                                        fake_ximilar: FakeXimilar) -> None:
    await fill_collection(fake_ximilar)
    fake_ximilar.fail_next("slow", times=5, path="visualKNN", slow_s=1.5)
    async with gateway(monkeypatch, production_url=catalog, staging_url=staging_url,
                       embedder_url=embedder.base_url, ximilar=fake_ximilar,
                       ximilar_timeout_s="0.3") as (client, _):
        body = (await client.post("/search", json={"image": {"base64": b64(BLUE_JPEG)}})).json()
    assert body["degraded"] == ["ximilar_search_timeout"]
    assert body["used_ximilar"] is False and keys(body)[0] == ("acme", "B1", "pgvector")


async def test_open_breaker_skips_ximilar_and_shows_in_healthz(
        monkeypatch: pytest.MonkeyPatch, catalog: str, staging_url: str, embedder: FakeEmbedder,
        fake_ximilar: FakeXimilar) -> None:
    fake_ximilar.fail_next("500", times=1000, path="visualKNN")
    async with gateway(monkeypatch, production_url=catalog, staging_url=staging_url,
                       embedder_url=embedder.base_url, ximilar=fake_ximilar,
                       ximilar_max_retries="0", ximilar_breaker_failures="2") as (client, _):
        bodies = [(await client.post("/search", json={"image": {"base64": b64(BLUE_JPEG)}})).json()
                  for _ in range(4)]
        health = (await client.get("/healthz")).json()
    assert all(b["degraded"] == ["ximilar_search_failed"] for b in bodies)
    assert all(keys(b)[0] == ("acme", "B1", "pgvector") for b in bodies)
    assert len(fake_ximilar.requests("visualKNN")) == 2  # then the circuit is open
    assert health["ximilar"]["breaker"] == "open"
