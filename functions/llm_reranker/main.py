"""llm reranker — `POST /tag` (context tags) and `POST /rerank` (visual rerank).

The single place that talks to Gemini. `RERANK_PROVIDER=auto` uses Gemini when
`GEMINI_API_KEY` is set, else the offline reranker: visual from stored catalog embeddings in
the production DB, semantic from tag agreement, context tags from garment-type rules (the
offline `/tag` works from the `hints` it is given and lists what it cannot infer in `unknown`).
Gemini failing for every candidate (down, breaker open) → 503 `upstream_unavailable` naming
`gemini`, so the orchestrator falls back to search scores.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from typing import Any

import functions_framework.aio
import httpx
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response

from functions.llm_reranker.schemas import Hints, RerankRequest, TagRequest
from unde import budget
from unde.db.embedded import start_embedded
from unde.db.pool import open_pool
from unde.errors import BadInput, ConfigError, UpstreamError
from unde.fetch import FetchPolicy, fetch_bytes
from unde.http import read_model, validate
from unde.logs import configure_logging
from unde.openapi import Operation, document
from unde.providers.gemini import GeminiClient, GeminiConfig
from unde.providers.gemini_policy import RetryBudget, RetryBudgets
from unde.rerank.candidates import RankedCandidate, TokenUsage
from unde.rerank.combine import Weights
from unde.rerank.context_rules import ContextTags, infer_context
from unde.rerank.gemini_rerank import GeminiReranker
from unde.rerank.offline import OfflineReranker
from unde.rerank.photo_cache import PreparedPhotos, prepare_jpeg
from unde.response_shapes import ContextTagsResponse, RerankResponse
from unde.runtime import Lazy, function_router
from unde.service_client import ServiceClient, http_limits
from unde.settings import LlmRerankerSettings, load_settings, secret_value
from unde.tracing import current as current_trace
from unde.vision.image_input import ImageLoader, ImageRef, read_upload
from unde.vision.images import encode_jpeg

SERVICE = "llm_reranker"
SETTINGS = load_settings(LlmRerankerSettings)
configure_logging(SERVICE, SETTINGS.log_level)
PROVIDER = ("gemini" if SETTINGS.gemini_api_key is not None else "local") \
    if SETTINGS.rerank_provider == "auto" else SETTINGS.rerank_provider
if PROVIDER == "gemini" and SETTINGS.gemini_api_key is None:
    raise ConfigError("RERANK_PROVIDER=gemini needs GEMINI_API_KEY")
WEIGHTS = Weights(SETTINGS.visual_weight, SETTINGS.semantic_weight)
JSON_LIMIT = int(SETTINGS.image_max_bytes * 1.4) + 2 * 1024 * 1024


class Runtime:
    """This process's HTTP client, image loader and the reranker of the chosen provider."""

    def __init__(self, settings: LlmRerankerSettings) -> None:
        self.http = httpx.AsyncClient(limits=http_limits())
        self.policy = FetchPolicy.from_settings(settings)
        self.loader = ImageLoader(self.http, self.policy, settings.image_max_pixels)
        token = secret_value(settings.internal_token)
        self.embedder = ServiceClient("embedder", settings.embedder_url, self.http, caller=SERVICE,
                                      token=token, default_timeout_s=5.0)
        self.gemini: GeminiReranker | None = None
        self.budgets = RetryBudgets(settings.gemini_request_retries)
        self.offline: OfflineReranker | None = None

    async def open(self, settings: LlmRerankerSettings) -> Runtime:
        if PROVIDER == "gemini":
            assert settings.gemini_api_key is not None
            budget = settings.gemini_thinking_budget
            config = GeminiConfig(
                api_key=settings.gemini_api_key.get_secret_value(), model=settings.gemini_model,
                api_url=settings.gemini_api_url, timeout_s=settings.gemini_timeout_s,
                max_retries=settings.gemini_max_retries, retry_delay_s=settings.gemini_retry_delay_s,
                concurrency=settings.gemini_concurrency,
                breaker_failures=settings.gemini_breaker_failures,
                breaker_cooldown_s=settings.gemini_breaker_cooldown_s,
                thinking_budget=None if budget < 0 else budget,
                request_retries=settings.gemini_request_retries)
            photos = PreparedPhotos(self._fetch_photo, max_side=settings.gemini_image_max_side,
                                    max_pixels=settings.image_max_pixels,
                                    max_bytes=settings.rerank_photo_cache_mb * 2**20,
                                    ttl_s=settings.rerank_photo_cache_ttl_s)
            self.gemini = GeminiReranker(GeminiClient(config, self.http), photos, WEIGHTS,
                                         batch_size=settings.rerank_batch)
        else:
            self.offline = OfflineReranker(await self._pool(settings), WEIGHTS)
        return self

    async def _pool(self, settings: LlmRerankerSettings) -> AsyncConnectionPool:
        url = settings.production_db_url.get_secret_value() if settings.production_db_url else None
        if url is None:
            url = (await asyncio.to_thread(start_embedded, settings.data_dir)).production
        return await open_pool(url, name="production", min_size=0, max_size=settings.db_pool_max,
                               statement_timeout_ms=settings.db_statement_timeout_ms, vector=True)

    async def _fetch_photo(self, url: str) -> bytes:
        return await fetch_bytes(self.http, url, self.policy)

    async def crop_jpeg(self, ref: ImageRef) -> bytes:
        """The crop, validated, cut to its bbox and shrunk, as JPEG (what Gemini is sent)."""
        data = await self.loader.load_bytes(ref)

        def prepare() -> bytes:
            image = self.loader.decode(data, ref.bbox, "image")
            image.thumbnail((SETTINGS.gemini_image_max_side, SETTINGS.gemini_image_max_side))
            return encode_jpeg(image, quality=85)

        return await asyncio.to_thread(prepare)

    def budget(self) -> RetryBudget:
        """The Gemini retry budget of the recognition this request serves (by request id)."""
        trace = current_trace()
        return self.budgets.for_request(trace.request_id if trace is not None else None)


async def _build() -> Runtime:
    return await Runtime(SETTINGS).open(SETTINGS)


RUNTIME: Lazy[Runtime] = Lazy(_build)


async def _tag_request(request: Request) -> tuple[ImageRef, Hints]:
    upload = await read_upload(request, SETTINGS.image_max_bytes)
    if upload is not None:
        encoded = base64.b64encode(upload.data).decode("ascii")
        return ImageRef.model_validate({"base64": encoded}), validate(Hints, upload.fields)
    body = await read_model(request, TagRequest, limit=JSON_LIMIT)
    return body.image_ref, body.hints


async def tag(request: Request) -> Mapping[str, Any]:
    """`POST /tag` → style, occasion, brand_style, season, unknown, provider."""
    ref, hints = await _tag_request(request)
    runtime = await RUNTIME.get()
    if runtime.gemini is not None:
        tags, usage = await runtime.gemini.tag(await runtime.crop_jpeg(ref), runtime.budget(), budget.current())
        return {**tags.to_json(), "provider": "gemini", "tokens": usage.to_json()}
    if ref.base64 is not None:  # the offline tagger reads hints, but the image must still be valid
        data = await runtime.loader.load_bytes(ref)
        await asyncio.to_thread(prepare_jpeg, data, 64, SETTINGS.image_max_pixels, "image")
    context: ContextTags = infer_context(hints.model_dump())
    return {**context.to_json(), "provider": "local", "tokens": None}


async def _embed_crop(runtime: Runtime, ref: ImageRef) -> tuple[Sequence[float], str]:
    body = await runtime.embedder.post("/embed", {"image": ref.model_dump(exclude_none=True)})
    vector, version = body.get("embedding"), body.get("model_version")
    if not isinstance(vector, list) or not isinstance(version, str):
        raise UpstreamError("embedder", "/embed answer lacks embedding/model_version")
    return vector, version


def _answer(ranked: list[RankedCandidate], provider: str, usage: TokenUsage | None) -> dict[str, Any]:
    return {"ranked": [item.to_json() for item in ranked], "provider": provider,
            "tokens": usage.to_json() if usage is not None else None}


async def rerank(request: Request) -> Mapping[str, Any]:
    """`POST /rerank` → candidates ranked by `VISUAL_WEIGHT × visual + SEMANTIC_WEIGHT × semantic`."""
    body = await read_model(request, RerankRequest, limit=JSON_LIMIT)
    if len(body.candidates) > SETTINGS.max_candidates:
        raise BadInput(f"at most {SETTINGS.max_candidates} candidates (got {len(body.candidates)})",
                       field="candidates")
    candidates = [c.to_domain() for c in body.candidates]
    ref = body.image_ref
    if not candidates:
        return _answer([], PROVIDER, None)
    runtime = await RUNTIME.get()
    if runtime.gemini is not None:
        if ref is None:
            raise BadInput("the Gemini reranker needs the crop: give 'image'", field="image")
        ranked, usage = await runtime.gemini.rerank(await runtime.crop_jpeg(ref), candidates, body.tags,
                                                    runtime.budget(), budget.current())
        return _answer(ranked, "gemini", usage)
    assert runtime.offline is not None
    embed_crop = None if ref is None else (lambda: _embed_crop(runtime, ref))
    ranked = await runtime.offline.rerank(candidates, body.tags, embedding=body.embedding,
                                          model_version=body.model_version, embed_crop=embed_crop)
    return _answer(ranked, "local", None)


async def health() -> Mapping[str, Any]:
    """Provider, model and weights; does not call Gemini (a probe must not spend tokens)."""
    info: dict[str, Any] = {
        "provider": PROVIDER,
        "model": SETTINGS.gemini_model if PROVIDER == "gemini" else "offline-embeddings+rules",
        "weights": {"visual": WEIGHTS.visual, "semantic": WEIGHTS.semantic},
        "max_candidates": SETTINGS.max_candidates,
    }
    if RUNTIME.ready and PROVIDER == "gemini":
        runtime = await RUNTIME.get()
        assert runtime.gemini is not None
        info["circuit_open"] = runtime.gemini.gemini.breaker.open
    return info


OPERATIONS = [
    Operation("POST", "/tag", "Crop → style, occasion, brand style, season", ContextTagsResponse,
              body=TagRequest, upload_fields=("type", "category", "color"), errors=(502, 503, 504)),
    Operation("POST", "/rerank", "Candidates → ranked by visual and semantic agreement", RerankResponse,
              body=RerankRequest, errors=(502, 503, 504)),
]
OPENAPI = document(SERVICE, OPERATIONS, description=__doc__)
ROUTER = function_router(SERVICE, {"POST /tag": tag, "POST /rerank": rerank}, health,
                         internal_token=secret_value(SETTINGS.internal_token), openapi=OPENAPI)


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    """functions-framework entry point."""
    return await ROUTER(request)
