"""How images arrive at a function: a JSON reference (URL or base64) or an upload.

JSON form, shared by every endpoint: ``{"url": "https://..."}`` or ``{"base64": "..."}``
(standard or URL-safe alphabet), optionally with ``"bbox": [x0, y0, x1, y1]`` in pixels.
Upload form: the raw image as the body (``Content-Type: image/jpeg|png|webp``) or a
multipart form with the file in the field ``image``; other form fields/query parameters
carry the rest.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Annotated

import httpx
from PIL import Image
from pydantic import AfterValidator, BaseModel, Field, model_validator
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from unde.errors import BadInput
from unde.fetch import FetchPolicy, fetch_bytes, url_syntax_problem
from unde.http import media_type, read_body, reject_nul
from unde.vision.images import crop, decode_image

RAW_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif",
                             "application/octet-stream"})


def _well_formed(url: str) -> str:
    problem = url_syntax_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


#: An image URL that can be parsed and sent as written (the SSRF checks come at fetch time).
ImageUrl = Annotated[str, Field(max_length=4096), AfterValidator(_well_formed)]


class ImageRef(BaseModel):
    """An image by URL or inline base64, with an optional pixel bounding box."""

    url: ImageUrl | None = None
    base64: str | None = Field(None, description="standard or URL-safe base64 image bytes")
    bbox: list[float] | None = Field(None, min_length=4, max_length=4)

    @model_validator(mode="after")
    def _one_source(self) -> ImageRef:
        if (self.url is None) == (self.base64 is None):
            raise ValueError("give exactly one of 'url' or 'base64'")
        return self


def decode_base64(text: str, *, field_name: str = "base64") -> bytes:
    """Decode standard or URL-safe base64 (padding optional) or raise BadInput."""
    cleaned = "".join(text.split())
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.urlsafe_b64decode(cleaned)
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInput("invalid base64 image data", field=field_name) from exc


@dataclass(slots=True)
class Upload:
    """An image sent as the body or as a multipart file, with the other fields sent along."""

    data: bytes
    fields: dict[str, str] = field(default_factory=dict)


async def read_upload(request: Request, limit: int) -> Upload | None:
    """The uploaded image if the request is a raw-image or multipart body, else None (JSON)."""
    kind = media_type(request)
    query = dict(request.query_params)
    reject_nul(query, "body")
    if kind in RAW_IMAGE_TYPES:
        return Upload(await read_body(request, limit), query)
    if kind != "multipart/form-data":
        return None
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadInput(f"body exceeds {limit} bytes", field="body", status_code=413)
    try:
        form = await request.form(max_files=1, max_fields=32)
    except (HTTPException, MultiPartException) as exc:  # a malformed multipart body
        detail = exc.detail if isinstance(exc, HTTPException) else exc.message
        raise BadInput(f"malformed multipart body: {detail}", field="body", status_code=400) from exc
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise BadInput("multipart body needs a file field named 'image'", field="image")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise BadInput(f"image exceeds {limit} bytes", field="image", status_code=413)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        reject_nul(fields, "body")
    finally:
        await form.close()
    return Upload(data, {**query, **fields})


class ImageLoader:
    """Turns an ImageRef or uploaded bytes into a decoded (and cropped) RGB image."""

    def __init__(self, client: httpx.AsyncClient, policy: FetchPolicy, max_pixels: int) -> None:
        self.client = client
        self.policy = policy
        self.max_pixels = max_pixels

    async def load_bytes(self, ref: ImageRef) -> bytes:
        """The encoded bytes an ImageRef points at."""
        if ref.base64 is not None:
            data = decode_base64(ref.base64)
            if len(data) > self.policy.max_bytes:
                raise BadInput(f"image exceeds {self.policy.max_bytes} bytes", field="base64",
                               status_code=413)
            return data
        assert ref.url is not None
        return await fetch_bytes(self.client, ref.url, self.policy)

    def decode(self, data: bytes, bbox: list[float] | None = None,
               field_name: str = "image") -> Image.Image:
        """Decode bytes (CPU work; callers run it in a thread for large images) and crop."""
        return crop(decode_image(data, max_pixels=self.max_pixels, field=field_name), bbox)

    async def load(self, ref: ImageRef) -> Image.Image:
        """Fetch or decode the referenced image and apply its bbox."""
        return self.decode(await self.load_bytes(ref), ref.bbox)
