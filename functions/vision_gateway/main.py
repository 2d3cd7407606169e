"""vision gateway (ximilar-gw) — `POST /detect`, `POST /tag`, `POST /search`.

The one function that talks to Ximilar and the owner of visual search:
- `/detect`: photo → garments (`bbox`, `category`, `type`, `confidence`) with each crop inline
  as `{"base64": <JPEG>}` (CONTRACTS.md), from Ximilar or the offline detector.
- `/tag`: crop → type, category, colour (+hex), material, pattern with probabilities.
- `/search`: crop → candidates by the `SEARCH_BACKEND` policy (`unde.retrieval.dual`), with the
  gate's numbers, the crop's embedding and model version, credits and degradations.

Images arrive as an `ImageRef` (URL fetched under the SSRF policy, or base64) or as an upload.
Resources — one httpx client, the Ximilar client, the production (pgvector) and staging pools,
the embedder client, the mall-brand cache — are built once per process on first use.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from typing import Any

import functions_framework.aio
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from functions.vision_gateway.runtime import Providers, Runtime, build_runtime
from functions.vision_gateway.schemas import DetectRequest, SearchRequest, TagRequest
from unde.budget import Deadline
from unde.db.pgvector import check_at_start
from unde.errors import BadInput
from unde.http import read_model, validate
from unde.logs import configure_logging
from unde.openapi import Operation, document
from unde.providers import garments
from unde.providers.ximilar import CreditMeter
from unde.response_shapes import DetectResponse, GarmentTagsResponse, SearchResponse
from unde.retrieval.dual import SearchQuery
from unde.runtime import Lazy, function_router
from unde.settings import VisionGatewaySettings, load_settings, secret_value
from unde.vision.image_input import ImageRef, read_upload
from unde.vision.upstream import prepare_upstream

SERVICE = "vision_gateway"
SETTINGS = load_settings(VisionGatewaySettings)
configure_logging(SERVICE, SETTINGS.log_level)
log = logging.getLogger(SERVICE)
JSON_LIMIT = int(SETTINGS.image_max_bytes * 1.4) + 65_536  # one base64 image plus slack
PROVIDERS = Providers.of(SETTINGS)  # a provider that cannot work fails start-up
if SETTINGS.production_db_url is not None:  # refuse to start on a pgvector older than 0.8
    check_at_start(secret_value(SETTINGS.production_db_url) or "")
RUNTIME: Lazy[Runtime] = Lazy(lambda: build_runtime(SETTINGS, providers=PROVIDERS))


async def _read(request: Request, model: type[Any]) -> tuple[Runtime, Any, Image.Image, bytes]:
    """The runtime, the validated body and its image, decoded, plus the bytes to send upstream."""
    runtime = await RUNTIME.get()
    max_pixels = SETTINGS.image_max_pixels
    upload = await read_upload(request, SETTINGS.image_max_bytes)
    if upload is not None:
        body = validate(model, {k: v for k, v in upload.fields.items() if k not in ("image", "url")})
        image, data = await asyncio.to_thread(prepare_upstream, upload.data, None, "image", max_pixels=max_pixels)
        return runtime, body, image, data
    body = await read_model(request, model, limit=JSON_LIMIT)
    ref: ImageRef | None = body.image_ref
    if ref is None:
        raise BadInput("an image is required: 'image' ({url|base64}), 'url', or an upload", field="image")
    field = "url" if body.image is None else "image"
    data = await runtime.loader.load_bytes(ref)
    image, prepared = await asyncio.to_thread(prepare_upstream, data, ref.bbox, field, max_pixels=max_pixels)
    return runtime, body, image, prepared


async def detect(request: Request) -> Mapping[str, Any]:
    """`POST /detect`."""
    runtime, _, image, data = await _read(request, DetectRequest)

    async def by_ximilar(deadline: Deadline, meter: CreditMeter) -> list[garments.Garment]:
        return await garments.detect_ximilar(runtime.ximilar, data, image.size, deadline, meter)

    found, provider, credits, degraded = await garments.ximilar_or_local(
        runtime.providers.detect, "detect", by_ximilar, lambda: garments.detect_local(image))
    crops = await asyncio.to_thread(lambda: [garments.crop_jpeg(image, g.bbox, g.mask) for g in found])
    items = [{"item_id": i, "bbox": list(g.bbox), "category": g.category, "type": g.type,
              "confidence": g.confidence, "crop": {"base64": base64.b64encode(crop).decode()}}
             for i, (g, crop) in enumerate(zip(found, crops, strict=True))]
    return {"items": items, "width": image.width, "height": image.height, "provider": provider,
            "credits": credits, "degraded": degraded}


async def tag(request: Request) -> Mapping[str, Any]:
    """`POST /tag`."""
    runtime, body, image, data = await _read(request, TagRequest)

    async def by_ximilar(deadline: Deadline, meter: CreditMeter) -> garments.Tags:
        return await garments.tag_ximilar(runtime.ximilar, data, body.category, deadline, meter)

    tags, provider, credits, degraded = await garments.ximilar_or_local(
        runtime.providers.tag, "tag", by_ximilar, lambda: garments.tag_local(image, body.category))
    return {**tags.to_json(), "provider": provider, "credits": credits, "degraded": degraded}


async def search(request: Request) -> Mapping[str, Any]:
    """`POST /search`."""
    runtime, body, _, data = await _read(request, SearchRequest)
    brands: tuple[str, ...] | None = None
    if body.user_mall is not None:
        brands = await (await runtime.mall_brands.get()).brands(body.user_mall)
    outcome = await runtime.retrieval.search(
        SearchQuery(image=data, top_k=body.top_k, brands=brands, force_ximilar=body.force_ximilar))
    answer = outcome.to_json()
    if brands is not None and not brands:
        answer["degraded"].append("unknown_mall")
    return answer


async def health() -> Mapping[str, Any]:
    """Providers per step, search backend, Ximilar breaker and credits (no I/O)."""
    ximilar: dict[str, Any] = {"configured": SETTINGS.ximilar_configured,
                               "collection": SETTINGS.ximilar_collection_id is not None}
    if RUNTIME.ready:
        client = (await RUNTIME.get()).ximilar
        ximilar.update(breaker=client.breaker.state.value, credits_spent=dict(client.credits_spent),
                       requests=client.attempts)
    else:
        ximilar.update(breaker="closed", credits_spent={}, requests=0)
    return {"providers": {"detect": PROVIDERS.detect, "tag": PROVIDERS.tag},
            "search_backend": SETTINGS.search_backend,
            "gate": {"confidence_threshold": SETTINGS.confidence_threshold,
                     "margin": SETTINGS.margin},
            "ximilar": ximilar,
            "pools": {"production": RUNTIME.ready and (await RUNTIME.get()).production.ready,
                      "staging": RUNTIME.ready and (await RUNTIME.get()).mall_brands.ready}}


UPSTREAM_ERRORS = (502, 503, 504)
OPERATIONS = [
    Operation("POST", "/detect", "Photo → garments with boxes and inline crops", DetectResponse,
              body=DetectRequest, upload_fields=(), errors=UPSTREAM_ERRORS),
    Operation("POST", "/tag", "Crop → type, category, colour, material, pattern", GarmentTagsResponse,
              body=TagRequest, upload_fields=("category",), errors=UPSTREAM_ERRORS),
    Operation("POST", "/search", "Crop → catalog candidates (pgvector and/or Ximilar)", SearchResponse,
              body=SearchRequest, upload_fields=("category", "top_k", "user_mall", "force_ximilar"),
              errors=UPSTREAM_ERRORS),
]
OPENAPI = document(SERVICE, OPERATIONS, description=__doc__)
ROUTER = function_router(SERVICE, {"POST /detect": detect, "POST /tag": tag,
                                   "POST /search": search}, health,
                         internal_token=secret_value(SETTINGS.internal_token), openapi=OPENAPI)


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    """functions-framework entry point."""
    return await ROUTER(request)
