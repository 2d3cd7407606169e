"""indexer (embed-batch) — catalog indexing on request; the same image runs the queue worker.

- `POST /embed_batch` `{"max_jobs": n}` (1…10000, default INDEX_BATCH_SIZE; empty body allowed):
  claim and embed up to n queued images now → counts, seconds, queue depth after.
- `POST /plan`: enqueue every catalog image not yet embedded for the loaded model version →
  products, images, already_embedded, already_queued, enqueued.
- `GET /healthz`: the model, the queue depth (the KEDA query) and jobs per status.
The long-running consumer is `python -m unde.indexing.worker` (KEDA-scaled Deployment).
With INTERNAL_TOKEN set, every route but /healthz and /metrics requires it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import functions_framework.aio
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from unde.errors import BadInput
from unde.http import media_type, parse_json, read_body, validate
from unde.indexing.queue import QUEUE_DEPTH_SQL
from unde.indexing.service import IndexingService, open_service
from unde.logs import configure_logging
from unde.openapi import Operation, document
from unde.response_shapes import EmbedBatchResponse, PlanResponse
from unde.runtime import Lazy, function_router
from unde.settings import IndexerSettings, load_settings, secret_value

SERVICE = "indexer"
SETTINGS = load_settings(IndexerSettings)
configure_logging(SERVICE, SETTINGS.log_level)
MAX_JOBS_PER_REQUEST = 10_000


class EmbedBatchRequest(BaseModel):
    """`POST /embed_batch` body."""

    model_config = ConfigDict(extra="forbid")
    max_jobs: int | None = Field(None, ge=1, le=MAX_JOBS_PER_REQUEST,
                                 description="images to claim now (default INDEX_BATCH_SIZE)")


class PlanRequest(BaseModel):
    """`POST /plan` takes no parameters: `{}` or an empty body."""

    model_config = ConfigDict(extra="forbid")


async def _open() -> IndexingService:
    return await open_service(SETTINGS)


INDEXER = Lazy(_open)


async def _read_optional_json(request: Request) -> Any:
    if media_type(request) not in ("application/json", ""):
        raise BadInput(f"Content-Type must be application/json, got {media_type(request)!r}",
                       field="Content-Type", status_code=415)
    raw = await read_body(request, 64 * 1024)
    return parse_json(raw) if raw.strip() else {}


async def embed_batch(request: Request) -> Mapping[str, Any]:
    """`POST /embed_batch`: one bounded run of the consumer."""
    body = validate(EmbedBatchRequest, await _read_optional_json(request))
    service = await INDEXER.get()
    counts = await service.consume(body.max_jobs or SETTINGS.index_batch_size)
    return {**counts.as_dict(), "model_version": service.model_version,
            "queue_depth": await service.depth()}


async def plan(request: Request) -> Mapping[str, Any]:
    """`POST /plan`: enqueue the missing catalog images."""
    body = await _read_optional_json(request)
    if not isinstance(body, dict) or body:
        raise BadInput("POST /plan takes no parameters (send {} or nothing)", field="body")
    service = await INDEXER.get()
    report = await service.plan()
    return {"model_version": report.model_version, "products": report.products,
            "images": report.images, "already_embedded": report.already_embedded,
            "already_queued": report.already_queued, "enqueued": report.enqueued,
            "queue_depth": await service.depth()}


async def health() -> Mapping[str, Any]:
    """Loads the model and pools on first call (a readiness probe warms the process)."""
    service = await INDEXER.get()
    return {"model_version": service.model_version, "dim": service.embedder.dim,
            "queue_depth": await service.depth(), "jobs": await service.status_counts(),
            "queue_depth_sql": QUEUE_DEPTH_SQL}


OPERATIONS = [
    Operation("POST", "/embed_batch", "Claim and embed up to max_jobs queued catalog images now",
              EmbedBatchResponse, body=EmbedBatchRequest, body_required=False, errors=(503,)),
    Operation("POST", "/plan", "Enqueue every catalog image not yet embedded", PlanResponse,
              body=PlanRequest, body_required=False, errors=(503,)),
]
OPENAPI = document(SERVICE, OPERATIONS, description=__doc__)
ROUTER = function_router(
    SERVICE, {"POST /embed_batch": embed_batch, "POST /plan": plan}, health,
    internal_token=secret_value(SETTINGS.internal_token), openapi=OPENAPI)


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    """functions-framework entry point."""
    return await ROUTER(request)
