"""Request bodies of the llm reranker (see functions/CONTRACTS.md).

Strict about what the reranker uses, lenient about extra fields the gateway may add.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from unde.models.base import EMBEDDING_DIM
from unde.rerank.candidates import RerankCandidate
from unde.vision.image_input import ImageRef, ImageUrl


class Hints(BaseModel):
    """What /detect and the gateway's /tag already know about the garment."""

    model_config = ConfigDict(extra="ignore")

    type: str | None = Field(None, max_length=64)
    category: str | None = Field(None, max_length=64)
    color: str | None = Field(None, max_length=64)


class TagRequest(BaseModel):
    """`POST /tag`: `{"image": ImageRef}` or the spec's `{"url": ...}`, optional hints."""

    model_config = ConfigDict(extra="ignore")

    image: ImageRef | None = None
    url: ImageUrl | None = None
    hints: Hints = Hints.model_validate({})

    @model_validator(mode="after")
    def _one_image(self) -> TagRequest:
        if (self.image is None) == (self.url is None):
            raise ValueError("give exactly one of 'image' or 'url'")
        return self

    @property
    def image_ref(self) -> ImageRef:
        return self.image if self.image is not None else ImageRef.model_validate({"url": self.url})


class CandidateIn(BaseModel):
    """One candidate as `/search` returns it."""

    model_config = ConfigDict(extra="ignore")

    brand: str = Field(min_length=1, max_length=200)
    external_id: str = Field(min_length=1, max_length=200)
    score: float = Field(0.0, ge=-1.0, le=1.0, description="the search score")
    image_urls: list[str] = Field(default_factory=list, max_length=32)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def to_domain(self) -> RerankCandidate:
        return RerankCandidate(self.brand, self.external_id, self.score, tuple(self.image_urls),
                               self.metadata)


class RerankRequest(BaseModel):
    """`POST /rerank`: the crop, its embedding (optional), candidates and merged tags."""

    model_config = ConfigDict(extra="ignore")

    image: ImageRef | None = None
    crop_url: ImageUrl | None = Field(None, description="the spec's spelling")
    embedding: list[float] | None = None
    model_version: str | None = Field(None, min_length=1, max_length=100)
    candidates: list[CandidateIn] = Field(default_factory=list)
    tags: dict[str, Any] = Field(default_factory=dict)

    @field_validator("embedding")
    @classmethod
    def _embedding(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if len(value) != EMBEDDING_DIM:
            raise ValueError(f"must have {EMBEDDING_DIM} numbers (got {len(value)})")
        if not all(math.isfinite(x) for x in value):
            raise ValueError("must hold finite numbers only")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RerankRequest:
        if self.image is not None and self.crop_url is not None:
            raise ValueError("give one of 'image' or 'crop_url', not both")
        if self.embedding is not None and self.model_version is None:
            raise ValueError("'model_version' is required with 'embedding'")
        return self

    @property
    def image_ref(self) -> ImageRef | None:
        if self.image is not None:
            return self.image
        return ImageRef.model_validate({"url": self.crop_url}) if self.crop_url is not None else None
