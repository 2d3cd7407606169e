"""The HTTP edge of every function: routing by path, the error boundary, body parsing.

functions-framework sends every path to one function, so each function builds a `Router`
and its entry point is ``return await router(request)``. The router is the error boundary:
`UndeError` becomes its JSON body and status; anything else becomes a bare 500 (the
traceback goes to the log, never to the caller).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from unde import tracing
from unde.errors import BadInput, MethodNotAllowed, NotFound, Unauthorized, UndeError

log = logging.getLogger(__name__)
access_log = logging.getLogger("unde.access")

Endpoint = Callable[[Request], Awaitable[Response | Mapping[str, Any] | BaseModel]]
Observer = Callable[[str, str, int, float], None]
M = TypeVar("M", bound=BaseModel)

JSON_LIMIT_BYTES = 1024 * 1024
INTERNAL_TOKEN_HEADER = "x-unde-internal-token"  # noqa: S105 (a header name)


class Router:
    """Dispatch `METHOD /path` to endpoints inside one error boundary."""

    def __init__(self, service: str, routes: Mapping[str, Endpoint], *, internal_token: str | None = None,
                 open_paths: frozenset[str] = frozenset({"/healthz", "/metrics"})) -> None:
        self.service = service
        self._token = internal_token.encode() if internal_token else None
        self._open_paths = open_paths
        self._routes: dict[tuple[str, str], Endpoint] = {}
        for key, endpoint in routes.items():
            method, path = key.split(" ", 1)
            self._routes[(method.upper(), path.rstrip("/") or "/")] = endpoint
        self._observers: list[Observer] = []

    def observe(self, observer: Observer) -> None:
        """Call `observer(path, method, status, seconds)` after every request (metrics)."""
        self._observers.append(observer)

    @property
    def paths(self) -> list[str]:
        return sorted({path for _, path in self._routes})

    @property
    def routes(self) -> list[tuple[str, str]]:
        """Every `(METHOD, /path)` this router serves."""
        return sorted(self._routes)

    def _match(self, method: str, path: str) -> tuple[str, Endpoint]:
        path = path.rstrip("/") or "/"
        endpoint = self._routes.get((method, path))
        if endpoint is None and method == "HEAD":
            endpoint = self._routes.get(("GET", path))
        if endpoint is not None:
            return path, endpoint
        if any(known == path for _, known in self._routes):
            raise MethodNotAllowed(f"{method} is not allowed on {path}")
        raise NotFound(f"no such endpoint: {path}")

    def _authorize(self, route: str, request: Request) -> None:
        """Function-to-function calls carry the shared internal token (from a Secret)."""
        if self._token is None or route in self._open_paths:
            return
        offered = request.headers.get(INTERNAL_TOKEN_HEADER, "").encode()
        if not hmac.compare_digest(offered, self._token):
            raise Unauthorized("missing or wrong internal token")

    async def __call__(self, request: Request) -> Response:
        context = tracing.context_from_headers(request.headers)
        tracing.set_current(context)
        started = time.perf_counter()
        route = "unmatched"
        try:
            route, endpoint = self._match(request.method, request.url.path)
            self._authorize(route, request)
            response = to_response(await endpoint(request))
        except UndeError as exc:
            response = error_response(exc)
        except ClientDisconnect:
            response = Response(status_code=499)
        except Exception:
            log.exception("unhandled error", extra={"path": request.url.path})
            response = JSONResponse(
                {"error": "internal", "message": "internal error"}, status_code=500
            )
        response.headers[tracing.REQUEST_ID_HEADER] = (tracing.current() or context).request_id
        elapsed = time.perf_counter() - started
        access_log.log(logging.DEBUG if route in self._open_paths else logging.INFO, "%s %s %d",
                       request.method, request.url.path, response.status_code,
                       extra={"route": route, "status": response.status_code, "ms": round(elapsed * 1000, 1)})
        for observer in self._observers:
            observer(route, request.method, response.status_code, elapsed)
        return response


def to_response(result: Response | Mapping[str, Any] | BaseModel) -> Response:
    """Wrap an endpoint's return value: Response as is, models and mappings as JSON."""
    if isinstance(result, Response):
        return result
    if isinstance(result, BaseModel):
        return JSONResponse(result.model_dump(mode="json"))
    return JSONResponse(dict(result))


def error_response(exc: UndeError) -> JSONResponse:
    """The JSON answer for a project error, with its status code."""
    if exc.status_code >= 500:
        log.warning("request failed: %s", exc, extra={"error": exc.code})
    return JSONResponse(exc.to_json(), status_code=exc.status_code)


async def collect_limited(chunks: AsyncIterator[bytes], limit: int, *, what: str, field: str) -> bytes:
    """Join a byte stream, stopping with 413 as soon as it passes `limit` (never reads it all)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BadInput(f"{what} exceeds {limit} bytes", field=field, status_code=413)
        parts.append(chunk)
    return b"".join(parts)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes with 413 before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadInput("Content-Length is not a number", field="Content-Length", status_code=400)
        if int(declared) > limit:
            raise BadInput(f"body exceeds {limit} bytes", field="body", status_code=413)
    return await collect_limited(request.stream(), limit, what="body", field="body")


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower-case ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def parse_json(raw: bytes) -> Any:
    """Decode a JSON body or fail with 400 (422 for NUL characters, see `reject_nul`, and for
    integers longer than Python converts, `sys.get_int_max_str_digits()`)."""
    if not raw:
        raise BadInput("body is empty; a JSON object is required", field="body", status_code=400)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"body is not valid JSON: {exc}", field="body", status_code=400) from exc
    except RecursionError as exc:  # `[[[[…` deeper than the interpreter's recursion limit
        raise BadInput("body nests arrays/objects too deeply", field="body", status_code=400) from exc
    except ValueError as exc:  # the only other ValueError json raises: an over-long integer
        raise BadInput(f"body holds an integer longer than {sys.get_int_max_str_digits()} digits",
                       field="body", status_code=422) from exc
    if b"\\u0000" in raw or _SURROGATE_ESCAPE.search(raw):
        try:
            reject_nul(data, "body")
        except RecursionError as exc:  # parsed just under the limit, walked just over it
            raise BadInput("body nests arrays/objects too deeply", field="body",
                           status_code=400) from exc
    return data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def reject_nul(value: Any, field: str) -> None:
    """422 naming the field if any string (or key) holds U+0000 or a lone surrogate: neither
    can be stored (PostgreSQL text/jsonb, UTF-8) and no legitimate input needs them."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadInput(f"{field}: must not contain NUL (U+0000) characters", field=field)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadInput(f"{field}: is not valid Unicode (a lone surrogate)", field=field) from exc
    elif isinstance(value, dict):
        for key, item in value.items():
            shown = str(key).replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode() or '""'
            where = shown if field == "body" else f"{field}.{shown}"
            reject_nul(key, where)
            reject_nul(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_nul(item, f"{field}.{index}")


def validate(model: type[M], data: Any) -> M:
    """Validate data against a pydantic model; the first problem becomes a 422 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise bad_input_from(exc) from exc


def bad_input_from(exc: ValidationError) -> BadInput:
    """Translate a pydantic error into BadInput naming the offending field."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    message = first["msg"].removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return BadInput(f"{field}: {message}{suffix}", field=field, status_code=422)


async def read_model(request: Request, model: type[M], limit: int = JSON_LIMIT_BYTES) -> M:
    """Read a JSON body (415 if not JSON, 400 if malformed, 413 if large) into `model` (422)."""
    if media_type(request) not in ("application/json", ""):
        raise BadInput(
            f"Content-Type must be application/json, got {media_type(request)!r}",
            field="Content-Type",
            status_code=415,
        )
    return validate(model, parse_json(await read_body(request, limit)))
