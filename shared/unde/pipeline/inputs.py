"""Parsing `POST /recognize` and `POST /feedback` bodies."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from starlette.requests import Request

from unde.errors import BadInput
from unde.http import read_model, validate
from unde.pipeline.photo import PhotoInput
from unde.redact import redact_url
from unde.vision.image_input import ImageRef, ImageUrl, read_upload

#: Leading bytes of the formats the gateway decodes; anything else is refused here already.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")


class RecognizeBody(BaseModel):
    """JSON form of `POST /recognize`."""

    photo_url: ImageUrl | None = None
    image: ImageRef | None = None
    user_mall: str | None = Field(None, min_length=1, max_length=200)
    user_id: str | None = Field(None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _one_photo(self) -> RecognizeBody:
        if (self.photo_url is None) == (self.image is None):
            raise ValueError("give exactly one of 'photo_url' or 'image'")
        return self


class FeedbackBody(BaseModel):
    """`POST /feedback`: the shopper's verdict on one garment's result."""

    request_id: uuid.UUID
    item_id: int = Field(ge=0, le=100)
    verdict: Literal["right_item", "wrong_item", "bought", "dismissed"]
    brand: str | None = Field(None, max_length=100)
    external_id: str | None = Field(None, max_length=200)
    comment: str | None = Field(None, max_length=500)


def looks_like_image(data: bytes) -> bool:
    """A cheap sniff of the container (the gateway does the real decoding)."""
    return data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


async def read_photo(request: Request, max_bytes: int) -> PhotoInput:
    """The photo and context from an upload (raw or multipart) or a JSON body."""
    upload = await read_upload(request, max_bytes)
    if upload is None:
        body = await read_model(request, RecognizeBody)
        if body.image is not None:
            label = body.image.url or "inline"
            return PhotoInput(body.image.model_dump(exclude_none=True), redact_url(label) if body.image.url
                              else label, body.user_mall, body.user_id)
        assert body.photo_url is not None
        return PhotoInput({"url": body.photo_url}, redact_url(body.photo_url), body.user_mall, body.user_id)
    if not upload.data:
        raise BadInput("photo is empty (0 bytes)", field="image")
    if not looks_like_image(upload.data):
        raise BadInput("photo is not a JPEG, PNG, WebP or GIF image", field="image", status_code=415)
    fields = validate(RecognizeBody, {"image": {"base64": "x"}, **{
        key: value for key, value in upload.fields.items() if key in ("user_mall", "user_id")}})
    digest = hashlib.sha256(upload.data).hexdigest()[:16]
    return PhotoInput({"base64": base64.b64encode(upload.data).decode()}, f"upload:sha256:{digest}",
                      fields.user_mall, fields.user_id)
