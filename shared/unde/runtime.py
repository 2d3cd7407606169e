"""Process-level plumbing for functions: lazily built resources and the standard routes.

functions-framework's ASGI app has no lifespan hooks, so settings are loaded at import
(a bad value fails start-up) and I/O resources (pools, HTTP clients, model sessions) are
built on the first request inside the server's event loop, exactly once.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from unde import budget
from unde.http import INTERNAL_TOKEN_HEADER, Endpoint, Router
from unde.metrics import http_observer, metrics_endpoint

T = TypeVar("T")


class Lazy(Generic[T]):
    """An async resource built once, on first use, in the running loop."""

    def __init__(self, factory: Callable[[], Awaitable[T]]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> T:
        if self._value is not None:
            return self._value
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._value is None:
                self._value = await self._factory()
        return self._value

    @property
    def ready(self) -> bool:
        return self._value is not None

    def reset(self) -> None:
        """Forget the resource (tests, or after the loop it was built in is gone)."""
        self._value = None
        self._lock = None


def function_router(service: str, routes: Mapping[str, Endpoint],
                    health: Callable[[], Awaitable[Mapping[str, Any]]], *,
                    internal_token: str | None = None, details_token: str | None = None,
                    openapi: Mapping[str, Any] | None = None) -> Router:
    """A Router with the function's routes plus `GET /healthz` and `GET /metrics`.

    Every route runs under the budget its request carries (`unde.budget.adopting`).
    With `internal_token` (INTERNAL_TOKEN), every route but health and metrics requires it.
    `/healthz` is open, but answers only `{service, status}` unless the caller presents
    `details_token` (default: `internal_token`; the public orchestrator passes INTERNAL_TOKEN
    here only); with no token configured at all (local runs) it shows the details.
    With `openapi` (a document from `unde.openapi.document`), `GET /openapi.json` serves it,
    open like health.
    """

    token = (details_token or internal_token or "").encode()

    async def healthz(request: Request) -> Mapping[str, Any]:
        details = await health()  # run either way: a readiness probe warms what it builds
        offered = request.headers.get(INTERNAL_TOKEN_HEADER, "").encode()
        if token and not hmac.compare_digest(offered, token):
            return {"service": service, "status": "ok"}  # peers, providers, SQL: not for anyone
        return {"service": service, "status": "ok", **details}

    standard: dict[str, Endpoint] = {"GET /healthz": healthz, "GET /metrics": metrics_endpoint}
    open_paths = {"/healthz", "/metrics"}
    if openapi is not None:
        served = json.dumps(openapi).encode()

        async def openapi_document(request: Request) -> Response:
            return Response(served, media_type="application/json")

        standard["GET /openapi.json"] = openapi_document
        open_paths.add("/openapi.json")
    adopted = {key: budget.adopting(endpoint) for key, endpoint in routes.items()}
    router = Router(service, {**adopted, **standard}, internal_token=internal_token,
                    open_paths=frozenset(open_paths))
    router.observe(http_observer(service))
    return router
