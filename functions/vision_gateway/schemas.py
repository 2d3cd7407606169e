"""Request bodies of the vision gateway (see functions/CONTRACTS.md).

Every endpoint takes `{"image": ImageRef}` or the spec's `{"url": ...}`; uploads carry the
other fields as form fields or query parameters and are validated by the same models.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from unde.vision.image_input import ImageRef, ImageUrl
from unde.vocabulary import CATEGORIES, CATEGORY_OF_TYPE

MAX_TOP_K = 200


class _OneImage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: ImageRef | None = None
    url: ImageUrl | None = None

    @model_validator(mode="after")
    def _one_image(self) -> _OneImage:
        if self.image is not None and self.url is not None:
            raise ValueError("give either 'image' or 'url', not both")
        return self

    @property
    def image_ref(self) -> ImageRef | None:
        """The image reference (None when the image came as an upload)."""
        if self.image is not None:
            return self.image
        return ImageRef.model_validate({"url": self.url}) if self.url is not None else None


def _known_category(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in CATEGORIES and value not in CATEGORY_OF_TYPE:
        raise ValueError(f"unknown category {value!r}; one of {', '.join(CATEGORIES)} "
                         "or a garment type")
    return value


class DetectRequest(_OneImage):
    """`POST /detect`."""


class TagRequest(_OneImage):
    """`POST /tag`; `category` is an optional hint (from /detect)."""

    category: str | None = Field(None, max_length=64)

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        return _known_category(value)


class SearchRequest(_OneImage):
    """`POST /search`."""

    category: str | None = Field(None, max_length=64)
    top_k: int = Field(50, ge=1, le=MAX_TOP_K)
    user_mall: str | None = Field(None, min_length=1, max_length=200)
    force_ximilar: bool = False

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        return _known_category(value)
