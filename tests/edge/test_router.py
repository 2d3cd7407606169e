from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from unde.errors import UpstreamUnavailable
from unde.http import read_model
from unde.runtime import function_router


class Echo(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(1, ge=1, le=10)


async def echo(request: Request) -> dict[str, object]:
    body = await read_model(request, Echo, limit=200)
    return {"name": body.name, "count": body.count}


async def crash(request: Request) -> dict[str, object]:
    raise RuntimeError("secret internals")


async def down(request: Request) -> dict[str, object]:
    raise UpstreamUnavailable("gemini", "circuit open")


async def health() -> dict[str, object]:
    return {"model": "test"}


ROUTER = function_router("test", {"POST /echo": echo, "POST /crash": crash, "POST /down": down}, health)


async def entry(request: Request):  # type: ignore[no-untyped-def]
    return await ROUTER(request)


@pytest.fixture
async def client():  # type: ignore[no-untyped-def]
    app = Starlette(routes=[Route("/{path:path}", entry, methods=["GET", "POST", "HEAD", "PUT"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fn") as c:
        yield c


async def test_valid_request(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={"name": "a", "count": 2})
    assert response.status_code == 200
    assert response.json() == {"name": "a", "count": 2}
    assert response.headers["x-request-id"]


async def test_request_id_is_adopted_from_the_caller(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={"name": "a"}, headers={"x-request-id": "req-42"})
    assert response.headers["x-request-id"] == "req-42"


@pytest.mark.parametrize(
    ("kwargs", "status", "field"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "body"),
        ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "body"),
        ({"content": b"name=a", "headers": {"content-type": "text/plain"}}, 415, "Content-Type"),
        ({"json": {"count": 2}}, 422, "name"),
        ({"json": {"name": "a", "count": 99}}, 422, "count"),
        ({"json": {"name": "x" * 500}}, 413, "body"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    client: httpx.AsyncClient, kwargs: dict, status: int, field: str
) -> None:
    response = await client.post("/echo", **kwargs)
    assert response.status_code == status
    assert response.json()["field"] == field


async def test_unknown_path_and_wrong_method(client: httpx.AsyncClient) -> None:
    assert (await client.post("/nope", json={})).status_code == 404
    response = await client.put("/echo", json={})
    assert response.status_code == 405


async def test_unexpected_errors_are_a_bare_500_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.post("/crash", json={})
    assert response.status_code == 500
    assert "secret internals" not in response.text and "Traceback" not in response.text


async def test_project_errors_keep_their_status(client: httpx.AsyncClient) -> None:
    response = await client.post("/down", json={})
    assert response.status_code == 503
    assert response.json() == {"error": "upstream_unavailable", "message": "gemini: circuit open",
                               "service": "gemini"}


async def test_health_and_metrics(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.json() == {"service": "test", "status": "ok", "model": "test"}
    await client.post("/echo", json={"name": "a"})
    metrics = (await client.get("/metrics")).text
    assert 'unde_http_requests_total{method="POST",route="/echo",service="test",status="200"}' in metrics


async def test_internal_token_is_required_when_configured() -> None:
    router = function_router("test", {"POST /echo": echo}, health, internal_token="s3cret")

    async def guarded(request: Request):  # type: ignore[no-untyped-def]
        return await router(request)

    app = Starlette(routes=[Route("/{path:path}", guarded, methods=["GET", "POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fn") as c:
        missing = await c.post("/echo", json={"name": "a"})
        wrong = await c.post("/echo", json={"name": "a"}, headers={"x-unde-internal-token": "nope"})
        right = await c.post("/echo", json={"name": "a"}, headers={"x-unde-internal-token": "s3cret"})
        health_open = await c.get("/healthz")
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert health_open.status_code == 200
