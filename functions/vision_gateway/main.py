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
from collections.abc import Mapping, Sequence
from typing import Any

import functions_framework.aio
import httpx
from PIL import Image, ImageOps
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response

from functions.vision_gateway.schemas import DetectRequest, SearchRequest, TagRequest
from unde.budget import Deadline
from unde.db.embedded import resolve_urls
from unde.db.pgvector import check_at_start, require_pgvector
from unde.db.pool import open_pool
from unde.errors import BadInput, ConfigError
from unde.fetch import FetchPolicy
from unde.http import read_model, validate
from unde.logs import configure_logging
from unde.openapi import Operation, document
from unde.providers import garments
from unde.providers.ximilar import CreditMeter, XimilarClient, client_from_settings
from unde.response_shapes import DetectResponse, GarmentTagsResponse, SearchResponse
from unde.retrieval.dual import DualRetrieval, Embedding, SearchQuery, XimilarHits
from unde.retrieval.mall_brands import MallBrands
from unde.retrieval.merge import Candidate
from unde.retrieval.search import SearchTuning
from unde.retrieval.sources import (
    embed_crop,
    pgvector_candidates,
    ximilar_candidates,
)
from unde.runtime import Lazy, function_router
from unde.service_client import ServiceClient, http_limits
from unde.settings import VisionGatewaySettings, load_settings, secret_value
from unde.vision.image_input import ImageLoader, ImageRef, read_upload
from unde.vision.images import clamp_bbox, decode_image, encode_jpeg

SERVICE = "vision_gateway"
SETTINGS = load_settings(VisionGatewaySettings)
configure_logging(SERVICE, SETTINGS.log_level)
log = logging.getLogger(SERVICE)

JSON_LIMIT = int(SETTINGS.image_max_bytes * 1.4) + 65_536  # one base64 image plus slack
UPSTREAM_MAX_SIDE = 1600  # larger photos are downscaled before going to Ximilar/the embedder

DETECT_PROVIDER = garments.resolve_provider(SETTINGS.detect_provider, SETTINGS.ximilar_configured)
TAG_PROVIDER = garments.resolve_provider(SETTINGS.tag_provider, SETTINGS.ximilar_configured)
if "ximilar" in (DETECT_PROVIDER, TAG_PROVIDER) and not SETTINGS.ximilar_configured:
    raise ConfigError("DETECT_PROVIDER/TAG_PROVIDER=ximilar needs XIMILAR_API_TOKEN")
if SETTINGS.production_db_url is not None:  # refuse to start on a pgvector older than 0.8
    check_at_start(secret_value(SETTINGS.production_db_url) or "")
if SETTINGS.search_backend == "ximilar" and not (SETTINGS.ximilar_configured
                                                 and SETTINGS.ximilar_collection_id):
    raise ConfigError("SEARCH_BACKEND=ximilar needs XIMILAR_API_TOKEN and XIMILAR_COLLECTION_ID")


async def _build_http() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(SETTINGS.fetch_timeout_s),
                             limits=http_limits(max_keepalive=20))


async def _build_ximilar() -> XimilarClient:
    return client_from_settings(SETTINGS, await HTTP.get())


async def _database_urls() -> tuple[str, str]:
    urls = await asyncio.to_thread(resolve_urls, secret_value(SETTINGS.production_db_url),
                                   secret_value(SETTINGS.staging_db_url), SETTINGS.data_dir)
    return urls.production, urls.staging


async def _build_production() -> AsyncConnectionPool:
    production, _ = await _database_urls()
    pool = await open_pool(production, name="production", min_size=SETTINGS.db_pool_min,
                           max_size=SETTINGS.db_pool_max,
                           statement_timeout_ms=SETTINGS.db_statement_timeout_ms, vector=True)
    try:
        await require_pgvector(pool)
    except BaseException:
        await pool.close()
        raise
    return pool


async def _build_mall_brands() -> MallBrands:
    _, staging = await _database_urls()
    pool = await open_pool(staging, name="staging", min_size=SETTINGS.db_pool_min,
                           max_size=SETTINGS.db_pool_max,
                           statement_timeout_ms=SETTINGS.db_statement_timeout_ms)
    return MallBrands(pool, SETTINGS.mall_brands_ttl_s)


async def _build_embedder() -> ServiceClient:
    return ServiceClient("embedder", SETTINGS.embedder_url, await HTTP.get(), caller=SERVICE,
                         token=secret_value(SETTINGS.internal_token),
                         default_timeout_s=SETTINGS.embedder_timeout_s)


async def _build_loader() -> ImageLoader:
    policy = FetchPolicy.of(SETTINGS.allowed_image_hosts, SETTINGS.image_max_bytes,
                            SETTINGS.fetch_timeout_s)
    return ImageLoader(await HTTP.get(), policy, SETTINGS.image_max_pixels)


TUNING = SearchTuning(probes=SETTINGS.search_ivf_probes, candidates=SETTINGS.search_sku_candidates,
                      exact_rows=SETTINGS.search_exact_rows)


async def _build_retrieval() -> DualRetrieval:
    async def embed(image: bytes) -> Embedding:
        return await embed_crop(await EMBEDDER.get(), image, timeout_s=SETTINGS.embedder_timeout_s)

    async def pgvector(embedding: Embedding, top_k: int,
                       brands: Sequence[str] | None) -> list[Candidate]:
        return await pgvector_candidates(await PRODUCTION.get(), embedding, top_k, brands, tuning=TUNING)

    async def ximilar(image: bytes, k: int, brands: Sequence[str] | None) -> XimilarHits:
        return await ximilar_candidates(await XIMILAR.get(), image, k, brands,
                                        budget_s=SETTINGS.ximilar_timeout_s)

    searchable = SETTINGS.ximilar_configured and bool(SETTINGS.ximilar_collection_id)
    return DualRetrieval(backend=SETTINGS.search_backend,
                         threshold=SETTINGS.confidence_threshold, margin=SETTINGS.margin,
                         ximilar_top_k=SETTINGS.ximilar_top_k, embed=embed, pgvector=pgvector,
                         ximilar=ximilar if searchable else None)


HTTP = Lazy(_build_http)
XIMILAR = Lazy(_build_ximilar)
PRODUCTION = Lazy(_build_production)
MALL_BRANDS = Lazy(_build_mall_brands)
EMBEDDER = Lazy(_build_embedder)
LOADER = Lazy(_build_loader)
RETRIEVAL = Lazy(_build_retrieval)


# ---- input --------------------------------------------------------------------------------

def _prepare(data: bytes, bbox: list[float] | None, field: str) -> tuple[Image.Image, bytes]:
    """Decode (validating format and size), crop, and the bytes to send upstream."""
    image = decode_image(data, max_pixels=SETTINGS.image_max_pixels, field=field)
    if bbox is not None:
        image = image.crop(clamp_bbox(bbox, image.size, field=f"{field}.bbox"))
        return image, encode_jpeg(image)
    if max(image.size) > UPSTREAM_MAX_SIDE:
        # contain() resizes into a new small image; copy() + thumbnail() held a full-size copy.
        return image, encode_jpeg(ImageOps.contain(image, (UPSTREAM_MAX_SIDE, UPSTREAM_MAX_SIDE)))
    if data[:2] == b"\xff\xd8" or data[:8] == b"\x89PNG\r\n\x1a\n":
        return image, data  # JPEG/PNG travel as sent: no second lossy encode
    return image, encode_jpeg(image)


async def _read(request: Request, model: type[Any]) -> tuple[Any, Image.Image, bytes]:
    """The validated body and its image, decoded, plus the bytes for Ximilar/the embedder."""
    upload = await read_upload(request, SETTINGS.image_max_bytes)
    if upload is not None:
        body = validate(model, {k: v for k, v in upload.fields.items() if k not in ("image", "url")})
        image, data = await asyncio.to_thread(_prepare, upload.data, None, "image")
        return body, image, data
    body = await read_model(request, model, limit=JSON_LIMIT)
    ref: ImageRef | None = body.image_ref
    if ref is None:
        raise BadInput("an image is required: 'image' ({url|base64}), 'url', or an upload",
                       field="image")
    field = "url" if body.image is None else "image"
    data = await (await LOADER.get()).load_bytes(ref)
    image, prepared = await asyncio.to_thread(_prepare, data, ref.bbox, field)
    return body, image, prepared


# ---- endpoints ----------------------------------------------------------------------------

async def detect(request: Request) -> Mapping[str, Any]:
    """`POST /detect`."""
    _, image, data = await _read(request, DetectRequest)

    async def by_ximilar(deadline: Deadline, meter: CreditMeter) -> list[garments.Garment]:
        return await garments.detect_ximilar(await XIMILAR.get(), data, image.size, deadline, meter)

    found, provider, credits, degraded = await garments.ximilar_or_local(
        DETECT_PROVIDER, "detect", by_ximilar, lambda: garments.detect_local(image))
    crops = await asyncio.to_thread(lambda: [garments.crop_jpeg(image, g.bbox, g.mask) for g in found])
    items = [{"item_id": i, "bbox": list(g.bbox), "category": g.category, "type": g.type,
              "confidence": g.confidence, "crop": {"base64": base64.b64encode(crop).decode()}}
             for i, (g, crop) in enumerate(zip(found, crops, strict=True))]
    return {"items": items, "width": image.width, "height": image.height, "provider": provider,
            "credits": credits, "degraded": degraded}


async def tag(request: Request) -> Mapping[str, Any]:
    """`POST /tag`."""
    body, image, data = await _read(request, TagRequest)

    async def by_ximilar(deadline: Deadline, meter: CreditMeter) -> garments.Tags:
        return await garments.tag_ximilar(await XIMILAR.get(), data, body.category, deadline, meter)

    tags, provider, credits, degraded = await garments.ximilar_or_local(
        TAG_PROVIDER, "tag", by_ximilar, lambda: garments.tag_local(image, body.category))
    return {**tags.to_json(), "provider": provider, "credits": credits, "degraded": degraded}


async def search(request: Request) -> Mapping[str, Any]:
    """`POST /search`."""
    body, _, data = await _read(request, SearchRequest)
    brands: tuple[str, ...] | None = None
    if body.user_mall is not None:
        brands = await (await MALL_BRANDS.get()).brands(body.user_mall)
    outcome = await (await RETRIEVAL.get()).search(
        SearchQuery(image=data, top_k=body.top_k, brands=brands, force_ximilar=body.force_ximilar))
    answer = outcome.to_json()
    if brands is not None and not brands:
        answer["degraded"].append("unknown_mall")
    return answer


async def health() -> Mapping[str, Any]:
    """Providers per step, search backend, Ximilar breaker and credits (no I/O)."""
    ximilar: dict[str, Any] = {"configured": SETTINGS.ximilar_configured,
                               "collection": SETTINGS.ximilar_collection_id is not None}
    if XIMILAR.ready:
        client = await XIMILAR.get()
        ximilar.update(breaker=client.breaker.state.value, credits_spent=dict(client.credits_spent),
                       requests=client.attempts)
    else:
        ximilar.update(breaker="closed", credits_spent={}, requests=0)
    return {"providers": {"detect": DETECT_PROVIDER, "tag": TAG_PROVIDER},
            "search_backend": SETTINGS.search_backend,
            "gate": {"confidence_threshold": SETTINGS.confidence_threshold,
                     "margin": SETTINGS.margin},
            "ximilar": ximilar,
            "pools": {"production": PRODUCTION.ready, "staging": MALL_BRANDS.ready}}


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
