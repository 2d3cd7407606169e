"""Calls from one function to another (orchestrator → gateway/reranker, gateway → embedder).

One `ServiceClient` per upstream per process, sharing one `httpx.AsyncClient`. Every call
carries the request id and traceparent, the internal token, and a timeout that never
exceeds the caller's remaining deadline (the request's adopted budget when none is passed);
that timeout travels as the callee's budget (`unde.budget`). Failures come back as the project's errors:
4xx → `UpstreamRejected` (not retryable; status, message and field kept), 5xx/connection →
`UpstreamUnavailable`, time-outs → `UpstreamTimeout`.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from unde import budget, tracing
from unde.budget import Deadline
from unde.errors import UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from unde.http import INTERNAL_TOKEN_HEADER
from unde.metrics import UPSTREAM_ERRORS, UPSTREAM_LATENCY

#: How long an idle pooled connection may be reused. Below the serving side's keep-alive
#: (functions-framework runs gunicorn + uvicorn workers: 2 s; Knative's queue-proxy and most
#: CDNs keep longer): with httpx's default 5 s, a connection idle 2–5 s was reused just after
#: the server had closed it and the call failed with ReadError (seen once in the 429-storm
#: reliability scenario).
KEEPALIVE_EXPIRY_S = 1.0


def http_limits(max_connections: int = 100, max_keepalive: int | None = None) -> httpx.Limits:
    """Connection pool limits for this project's outbound clients (see KEEPALIVE_EXPIRY_S)."""
    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive,
                        keepalive_expiry=KEEPALIVE_EXPIRY_S)


class ServiceClient:
    """JSON-over-HTTP client for one internal function."""

    def __init__(self, name: str, base_url: str, http: httpx.AsyncClient, *,
                 caller: str, token: str | None = None, default_timeout_s: float = 10.0) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.caller = caller
        self.token = token
        self.default_timeout_s = default_timeout_s

    def _headers(self, timeout_s: float | None = None) -> dict[str, str]:
        headers = tracing.outbound_headers()
        if timeout_s is not None:
            headers.update(budget.headers_for(timeout_s))
        if self.token:
            headers[INTERNAL_TOKEN_HEADER] = self.token
        return headers

    async def post(self, path: str, body: dict[str, Any], *, deadline: Deadline | None = None,
                   timeout_s: float | None = None) -> dict[str, Any]:
        """POST JSON to `path` and return the decoded JSON answer."""
        cap = timeout_s or self.default_timeout_s
        timeout = (deadline or budget.current()).timeout(cap)
        started = time.perf_counter()
        try:
            response = await self.http.post(f"{self.base_url}{path}", json=body,
                                            headers=self._headers(timeout), timeout=timeout)
        except httpx.TimeoutException as exc:
            self._failed(path, "timeout")
            raise UpstreamTimeout(self.name, f"{path} took over {timeout:.2f}s") from exc
        except httpx.HTTPError as exc:
            self._failed(path, "connection")
            raise UpstreamUnavailable(self.name, f"{path}: {exc.__class__.__name__}: {exc}",
                                      retryable=True) from exc
        finally:
            UPSTREAM_LATENCY.labels(self.caller, self.name, path).observe(
                time.perf_counter() - started)
        return self._decode(path, response)

    async def get(self, path: str, *, timeout_s: float = 2.0) -> dict[str, Any]:
        """GET a JSON document (health checks)."""
        try:
            response = await self.http.get(f"{self.base_url}{path}", headers=self._headers(),
                                           timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(self.name, f"{path}: {exc.__class__.__name__}") from exc
        return self._decode(path, response)

    def _failed(self, path: str, kind: str) -> None:
        UPSTREAM_ERRORS.labels(self.caller, self.name, path, kind).inc()

    def _decode(self, path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else None
            message = message or response.text[:200] or f"HTTP {response.status_code}"
            self._failed(path, str(response.status_code))
            if response.status_code >= 500:
                raise UpstreamUnavailable(self.name, f"{path}: {message}", retryable=True)
            field = body.get("field") if isinstance(body, dict) else None
            raise UpstreamRejected(self.name, f"{path}: HTTP {response.status_code}: {message}",
                                   upstream_status=response.status_code, field=field)
        if not isinstance(body, dict):
            self._failed(path, "malformed")
            raise UpstreamError(self.name, f"{path}: answer is not a JSON object")
        return body
