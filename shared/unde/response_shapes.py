"""Response bodies of every function (functions/CONTRACTS.md) as pydantic models.

One definition per contract: the OpenAPI documents (`unde.openapi`) are built from them, the
contract tests validate real answers against them, and the orchestrator parses the gateway's
and the reranker's answers with them. Models allow extra keys: adding a field is not a
breaking change.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    """Every error answer: a code, a message, and what it is about."""

    model_config = ConfigDict(title="Error")

    error: str = Field(description="machine-readable code, e.g. bad_input, url_not_allowed")
    message: str = Field(description="what went wrong, for a human")
    field: str | None = Field(None, description="the request field at fault (bad input)")
    service: str | None = Field(None, description="the upstream that failed (5xx)")


# ---- embedder -------------------------------------------------------------------------------

class EmbedResponse(_Shape):
    """`POST /embed`: one vector (`image`) or one per image (`images`)."""

    embedding: list[float] | None = Field(None, description="single-image form: 512 floats")
    embeddings: list[list[float]] | None = Field(None, description="batch form")
    model_version: str
    ms: float


# ---- vision gateway -------------------------------------------------------------------------

class InlineImage(_Shape):
    base64: str


class DetectedItem(_Shape):
    item_id: int
    bbox: list[float] = Field(min_length=4, max_length=4)
    category: str
    type: str | None
    confidence: float
    crop: InlineImage


class DetectResponse(_Shape):
    items: list[DetectedItem]
    width: int
    height: int
    provider: str
    credits: int
    degraded: list[str] = Field(default_factory=list)


class GarmentTagsResponse(_Shape):
    type: str | None
    category: str | None
    color: str | None
    color_hex: str | None
    material: str | None
    pattern: str | None
    probabilities: dict[str, float]
    unknown: list[str]
    provider: str
    credits: int
    degraded: list[str] = Field(default_factory=list)


class CandidateOut(_Shape):
    brand: str
    external_id: str
    score: float
    source: Literal["pgvector", "ximilar", "both"]
    image_urls: list[str]
    metadata: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        """The catalog identity, (brand, external_id)."""
        return self.brand, self.external_id


class SearchResponse(_Shape):
    candidates: list[CandidateOut]
    pgvector_confident: bool
    used_ximilar: bool
    pgvector_top1_score: float | None
    pgvector_margin: float | None
    ximilar_top1_score: float | None
    embedding: list[float] | None
    model_version: str | None
    credits: int
    degraded: list[str]


# ---- llm reranker ---------------------------------------------------------------------------

class ContextTagsResponse(_Shape):
    style: str | None
    occasion: str | None
    brand_style: str | None
    season: str | None
    unknown: list[str]
    provider: str


class RankedOut(_Shape):
    brand: str
    external_id: str
    sku_id: str
    visual: float | None
    semantic: float | None = Field(description="null only when ranked without the reranker")
    score: float
    reason: str | None


class Tokens(_Shape):
    prompt: int
    output: int


class RerankResponse(_Shape):
    ranked: list[RankedOut] = Field(description="sorted by score, descending")
    provider: str
    tokens: Tokens | None = None


# ---- orchestrator ---------------------------------------------------------------------------

class RecognizedItem(_Shape):
    item_id: int
    bbox: list[float]
    category: str
    type: str | None
    confidence: float
    tags: dict[str, Any]
    match_type: str
    matches: list[dict[str, Any]]
    partial: bool
    degraded: list[str]


class RecognizeResponse(_Shape):
    """JSON answer; with `Accept: text/event-stream` the same arrives as events."""

    request_id: str
    items: list[RecognizedItem]
    timings_ms: dict[str, float | None]
    total_ms: float
    credits: int
    degraded: list[str]


class FeedbackResponse(_Shape):
    request_id: str
    item_id: int
    stored: bool


# ---- indexer --------------------------------------------------------------------------------

class EmbedBatchResponse(_Shape):
    claimed: int
    inferred: int
    reused: int
    written: int
    retried: int
    dead: int
    batches: int
    seconds: float
    model_version: str
    queue_depth: int


class PlanResponse(_Shape):
    model_version: str
    products: int
    images: int
    already_embedded: int
    already_queued: int
    enqueued: int
    queue_depth: int


# ---- every function -------------------------------------------------------------------------

class HealthResponse(_Shape):
    """`GET /healthz`: the service name and status; with the internal token, plus what the
    function reports about itself."""

    service: str
    status: Literal["ok"]
