"""The orchestrator's view of what the gateway and the reranker answer (see CONTRACTS.md).

Lenient on extra fields (the other side may add some), strict on what the pipeline uses.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class DetectedItem(Lenient):
    item_id: int
    bbox: list[float] = Field(min_length=4, max_length=4)
    category: str | None = None
    type: str | None = None
    confidence: float = 0.0
    crop: dict[str, Any]


class Detection(Lenient):
    items: list[DetectedItem] = Field(default_factory=list)
    width: int | None = None
    height: int | None = None
    provider: str | None = None
    credits: int = 0
    degraded: list[str] = Field(default_factory=list)  # e.g. ximilar_detect_failed (offline detector used)


class Candidate(Lenient):
    brand: str
    external_id: str
    score: float
    source: str | None = None
    image_urls: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.brand, self.external_id


class SearchResult(Lenient):
    candidates: list[Candidate] = Field(default_factory=list)
    pgvector_confident: bool = False
    used_ximilar: bool = False
    pgvector_top1_score: float | None = None
    pgvector_margin: float | None = None
    ximilar_top1_score: float | None = None
    embedding: list[float] | None = None
    model_version: str | None = None
    credits: int = 0
    degraded: list[str] = Field(default_factory=list)


class Ranked(Lenient):
    brand: str
    external_id: str
    visual: float | None = None
    semantic: float | None = None
    score: float
    reason: str | None = None


class RerankResult(Lenient):
    ranked: list[Ranked] = Field(default_factory=list)
    provider: str | None = None
