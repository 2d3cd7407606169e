"""orchestrator — the URL the mobile app calls: `POST /recognize`, `POST /feedback`.

Chains the vision gateway, the LLM reranker and the staging DB (availability); writes one
`recognition_requests` row per request to the production DB in the background.
`Accept: text/event-stream` streams `detected`, `candidates`, `ranked` and `done` events.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import functions_framework.aio
import httpx
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from unde import budget, tracing
from unde.app_auth import AppKeys
from unde.console import console_routes
from unde.db.embedded import resolve_urls
from unde.db.pool import budgeted, open_pool
from unde.errors import UndeError
from unde.http import read_model
from unde.logs import configure_logging
from unde.openapi import Operation, document
from unde.pipeline.feedback import store_feedback
from unde.pipeline.inputs import FeedbackBody, RecognizeBody, read_photo
from unde.pipeline.item import Emit, no_emit
from unde.pipeline.photo import PhotoInput, Recognizer
from unde.pipeline.request_log import RequestLog
from unde.rate_limit import admission_limits
from unde.response_shapes import FeedbackResponse, RecognizeResponse
from unde.runtime import Lazy, function_router
from unde.service_client import ServiceClient, http_limits
from unde.settings import OrchestratorSettings, load_settings, secret_value

SERVICE = "orchestrator"
SETTINGS = load_settings(OrchestratorSettings)
configure_logging(SERVICE, SETTINGS.log_level)
log = logging.getLogger(SERVICE)


class Runtime:
    """This process's clients, pools and request log, built on first use."""

    def __init__(self, settings: OrchestratorSettings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        token = secret_value(settings.internal_token)
        urls = resolve_urls(secret_value(settings.production_db_url), secret_value(settings.staging_db_url),
                            settings.data_dir)
        self.http = http or httpx.AsyncClient(limits=http_limits())
        self.gateway = ServiceClient("vision-gateway", settings.vision_gateway_url, self.http,
                                     caller=SERVICE, token=token)
        self.reranker = ServiceClient("llm-reranker", settings.llm_reranker_url, self.http,
                                      caller=SERVICE, token=token)
        self._urls = urls
        self.production: AsyncConnectionPool | None = None
        self.staging: AsyncConnectionPool | None = None
        self.request_log: RequestLog | None = None

    async def open(self) -> Runtime:
        # min_size=0: the function starts and answers even while a database is down.
        self.production = await open_pool(self._urls.production, name="production", min_size=0,
                                          max_size=self.settings.db_pool_max,
                                          statement_timeout_ms=self.settings.db_statement_timeout_ms)
        self.staging = await open_pool(self._urls.staging, name="staging", min_size=0,
                                       max_size=self.settings.db_pool_max,
                                       statement_timeout_ms=self.settings.db_statement_timeout_ms)
        spool = self.settings.log_spool_dir or self.settings.data_dir / "spool"
        self.request_log = RequestLog(self.production, spool)
        # Records a previous process spooled (DB outage, crash) are re-sent now, not at the next request.
        self._flush = asyncio.get_running_loop().create_task(self.request_log.flush_spool())
        return self

    @property
    def recognizer(self) -> Recognizer:
        return Recognizer(self.settings, self.gateway, self.reranker, self.staging)


async def _build() -> Runtime:
    return await Runtime(SETTINGS).open()


RUNTIME: Lazy[Runtime] = Lazy(_build)


def failure_record(request_id: str, photo: PhotoInput, exc: UndeError) -> dict[str, Any]:
    """The log row of a request that could not be answered (still exactly one row)."""
    return {"id": request_id, "photo_url": photo.photo_url, "user_mall": photo.user_mall,
            "items_detected": 0, "items_matched": 0, "degradations": [exc.code],
            "final_matches": {"error": str(exc)}}


APP_KEYS = AppKeys.parse(secret_value(SETTINGS.app_api_keys))
LIMITS = admission_limits(SETTINGS)
if not APP_KEYS.enabled:
    log.warning("APP_API_KEYS is not set: /recognize and /feedback accept unauthenticated calls")


def _admit(request: Request, user_id: str | None) -> None:
    """Authenticate the app, then rate-limit its key, the shopper and the client address."""
    LIMITS.check(request, app_key=APP_KEYS.check(request), user_id=user_id)


async def recognize(request: Request) -> Response:
    APP_KEYS.check(request)  # before reading a large body
    runtime = await RUNTIME.get()
    photo = await read_photo(request, SETTINGS.image_max_bytes)
    _admit(request, photo.user_id)
    request_id = tracing.adopt_uuid_request_id()
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(_stream(runtime, photo, request_id), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
    return JSONResponse(await _recognize(runtime, photo, request_id))


async def _recognize(runtime: Runtime, photo: PhotoInput, request_id: str | None,
                     emit: Emit | None = None) -> dict[str, Any]:
    assert runtime.request_log is not None
    recognizer = runtime.recognizer
    request_id = request_id or tracing.new_context().request_id
    try:
        async with asyncio.timeout(SETTINGS.request_hard_deadline_s):
            result = await recognizer.recognize(photo, request_id, emit or no_emit)
    except UndeError as exc:
        runtime.request_log.submit(failure_record(request_id, photo, exc))
        raise
    runtime.request_log.submit(result.record)
    return result.response


def _sse(event: str, data: Mapping[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


async def _stream(runtime: Runtime, photo: PhotoInput, request_id: str | None) -> AsyncIterator[str]:
    """Run the recognition in a task and relay its events as they happen."""
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()

    async def emit(event: str, data: dict[str, Any]) -> None:
        await queue.put((event, data))

    async def run() -> None:
        try:
            response = await _recognize(runtime, photo, request_id, emit)
            await queue.put(("result", response))
        except UndeError as exc:
            await queue.put(("error", {"status": exc.status_code, **exc.to_json()}))
        except Exception:
            log.exception("streamed recognition failed")
            await queue.put(("error", {"status": 500, "error": "internal"}))
        finally:
            await queue.put(None)

    task = asyncio.create_task(run())
    try:
        while (message := await queue.get()) is not None:
            yield _sse(*message)
    finally:
        if not task.done():
            task.cancel()


async def feedback(request: Request) -> Mapping[str, Any]:
    APP_KEYS.check(request)
    body = await read_model(request, FeedbackBody)
    runtime = await RUNTIME.get()
    assert runtime.production is not None
    async with budgeted(runtime.production, budget.current(), 5.0) as conn:
        return await store_feedback(conn, body)


async def health() -> Mapping[str, Any]:
    return {"vision_gateway": SETTINGS.vision_gateway_url, "llm_reranker": SETTINGS.llm_reranker_url,
            "tagging_mode": SETTINGS.tagging_mode, "min_candidates": SETTINGS.min_candidates}


OPERATIONS = [
    Operation("POST", "/recognize", "Photo → garments with matching products", RecognizeResponse,
              body=RecognizeBody, upload_fields=("user_mall", "user_id"),
              errors=(429, 502, 503, 504), event_stream=True),
    Operation("POST", "/feedback", "The shopper's verdict on one garment's result", FeedbackResponse,
              body=FeedbackBody, errors=(404, 503)),
]
OPENAPI = document(SERVICE, OPERATIONS, description=__doc__, auth="app")
CONSOLE = console_routes(SETTINGS, APP_KEYS, LIMITS, lambda: RUNTIME.get())  # {} unless CONSOLE_ENABLED
ROUTER = function_router(SERVICE, {"POST /recognize": recognize, "POST /feedback": feedback, **CONSOLE},
                         health, details_token=secret_value(SETTINGS.internal_token), openapi=OPENAPI)


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    """functions-framework entry point: every path goes through the router."""
    return await ROUTER(request)
