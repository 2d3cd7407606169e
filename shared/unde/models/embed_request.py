"""Request bodies of `POST /embed` (JSON form; uploads are read by `read_upload`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unde.errors import BadInput
from unde.vision.image_input import ImageRef


class EmbedRequest(BaseModel):
    """`{"image": ImageRef}` or `{"images": [ImageRef, ...]}` — exactly one of them."""

    model_config = ConfigDict(extra="forbid")

    image: ImageRef | None = None
    images: list[ImageRef] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> EmbedRequest:
        if (self.image is None) == (self.images is None):
            raise ValueError("give exactly one of 'image' or 'images'")
        return self


def parse_bbox(text: str | None) -> list[float] | None:
    """A bbox sent as a form field or query parameter: `x0,y0,x1,y1` or a JSON list."""
    if text is None or not text.strip():
        return None
    try:
        values = json.loads(text) if text.strip().startswith("[") else text.split(",")
        bbox = [float(value) for value in values]
    except (ValueError, TypeError, RecursionError) as exc:
        raise BadInput("bbox must be four numbers x0,y0,x1,y1", field="bbox") from exc
    return check_bbox(bbox, "bbox")


def check_bbox(bbox: Sequence[float] | None, field: str) -> list[float] | None:
    """Four finite numbers with x0 < x1 and y0 < y1 (clamping to the image happens later)."""
    if bbox is None:
        return None
    if len(bbox) != 4 or not all(math.isfinite(value) for value in bbox):
        raise BadInput("bbox must be four finite numbers x0,y0,x1,y1", field=field)
    if bbox[0] >= bbox[2] or bbox[1] >= bbox[3]:
        raise BadInput("bbox must have x0 < x1 and y0 < y1", field=field)
    return list(bbox)
