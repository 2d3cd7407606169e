"""embedder — `POST /embed`: images → L2-normalised 512-d vectors (latency-tuned).

Input: JSON `{"image": ImageRef}` / `{"images": [ImageRef, ...]}` (≤ EMBED_MAX_BATCH), or the
raw image as the body (`Content-Type: image/jpeg|png|webp`), or a multipart form with the
file in `image`; uploads take an optional `bbox=x0,y0,x1,y1` (form field or query).
URLs are fetched under the SSRF policy (`ALLOWED_IMAGE_HOSTS`). Decoding and inference run in
worker threads; a batch is one model call. `GET /healthz` names the loaded model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import functions_framework.aio
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from functions.embedder.runtime import Runtime, build_runtime
from unde.errors import BadInput
from unde.http import read_model
from unde.logs import configure_logging
from unde.models.embed_request import EmbedRequest, check_bbox, parse_bbox
from unde.openapi import Operation, document
from unde.response_shapes import EmbedResponse
from unde.runtime import Lazy, function_router
from unde.settings import EmbedderSettings, load_settings, secret_value
from unde.vision.image_input import ImageLoader, ImageRef, read_upload
from unde.vision.images import clamp_bbox, decode_image

SERVICE = "embedder"
SETTINGS = load_settings(EmbedderSettings)
configure_logging(SERVICE, SETTINGS.log_level)
JSON_LIMIT = int(SETTINGS.image_max_bytes * 1.4) + 65_536  # one base64 image plus slack


RUNTIME: Lazy[Runtime] = Lazy(lambda: build_runtime(SETTINGS))


def _decode(data: bytes, bbox: list[float] | None, field: str, bbox_field: str) -> Image.Image:
    """Decode (CPU work: callers run it in a thread) and crop to the bbox."""
    image = decode_image(data, max_pixels=SETTINGS.image_max_pixels, field=field)
    return image if bbox is None else image.crop(clamp_bbox(bbox, image.size, field=bbox_field))


async def _load_ref(loader: ImageLoader, ref: ImageRef, field: str) -> Image.Image:
    bbox = check_bbox(ref.bbox, f"{field}.bbox")
    data = await loader.load_bytes(ref)
    return await asyncio.to_thread(_decode, data, bbox, field, f"{field}.bbox")


async def _images_from(request: Request, loader: ImageLoader) -> tuple[list[Image.Image], bool]:
    """The request's images and whether it used the batch form."""
    upload = await read_upload(request, SETTINGS.image_max_bytes)
    if upload is not None:
        bbox = parse_bbox(upload.fields.get("bbox"))
        return [await asyncio.to_thread(_decode, upload.data, bbox, "image", "bbox")], False
    body = await read_model(request, EmbedRequest, limit=JSON_LIMIT * SETTINGS.embed_max_batch)
    if body.image is not None:
        return [await _load_ref(loader, body.image, "image")], False
    assert body.images is not None
    if len(body.images) > SETTINGS.embed_max_batch:
        raise BadInput(f"at most {SETTINGS.embed_max_batch} images per request "
                       f"(got {len(body.images)})", field="images")
    images = await asyncio.gather(*(_load_ref(loader, ref, f"images.{i}")
                                    for i, ref in enumerate(body.images)))
    return list(images), True


async def embed(request: Request) -> Mapping[str, Any]:
    """`POST /embed`."""
    runtime = await RUNTIME.get()
    images, batch = await _images_from(request, runtime.loader)
    service = runtime.service
    result = await service.embed(images)
    version = service.embedder.model_version
    if batch:
        return {"embeddings": result.vectors.tolist(), "model_version": version, "ms": result.ms}
    return {"embedding": result.vectors[0].tolist(), "model_version": version, "ms": result.ms}


async def health() -> Mapping[str, Any]:
    """Loads the model on first call, so a readiness probe warms the process."""
    service = (await RUNTIME.get()).service
    return {**service.describe(), "max_batch": SETTINGS.embed_max_batch}


OPERATIONS = [
    Operation("POST", "/embed", "Images → L2-normalised embeddings", EmbedResponse, body=EmbedRequest,
              upload_fields=("bbox",), errors=(502, 504)),
]
OPENAPI = document(SERVICE, OPERATIONS, description=__doc__)
ROUTER = function_router(SERVICE, {"POST /embed": embed}, health,
                         internal_token=secret_value(SETTINGS.internal_token), openapi=OPENAPI)


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    """functions-framework entry point."""
    return await ROUTER(request)
