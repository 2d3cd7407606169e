"""The console's JSON answers (its own API, beside the orchestrator's documented contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class Mall(BaseModel):
    name: str
    stores: int


class MallsResponse(BaseModel):
    """`GET /console/api/malls`: the malls of the staging DB's stores."""

    malls: list[Mall]


class DemoPhoto(BaseModel):
    name: str
    mall: str | None = None


class DemoPhotosResponse(BaseModel):
    """`GET /console/api/demo-photos`: the demo's street photos (none outside a demo data dir)."""

    photos: list[DemoPhoto]


class RequestSummary(BaseModel):
    id: str
    created_at: datetime | None
    user_mall: str | None
    photo_url: str
    items_detected: int | None
    items_matched: int | None
    total_time_ms: int | None
    degradations: Any = None


class RecentRequests(BaseModel):
    """`GET /console/api/requests`: the latest requests, newest first."""

    requests: list[RequestSummary]


class CatalogProduct(BaseModel):
    """A final match as the catalog describes it now (the log keeps only its ids)."""

    brand: str
    external_id: str
    name: str | None
    price: float | None
    currency: str | None
    image: str | None


class PastRequest(BaseModel):
    """`GET /console/api/request?id=`: one `recognition_requests` row, plus its matches' products."""

    id: str
    created_at: datetime | None
    user_id: str | None
    photo_url: str
    user_mall: str | None
    detected_items: Any
    detection_time_ms: int | None
    tags: Any
    tagging_time_ms: int | None
    search_results: Any
    search_time_ms: int | None
    availability_time_ms: int | None
    final_matches: Any
    rerank_time_ms: int | None
    total_time_ms: int | None
    items_detected: int | None
    items_matched: int | None
    used_ximilar_booster: bool | None
    used_ximilar_tagging: bool | None
    pgvector_top1_score: float | None
    pgvector_margin: float | None
    ximilar_top1_score: float | None
    candidates_after_availability: int | None
    flags: Any
    degradations: Any
    ximilar_credits: int | None
    user_feedback: Any
    products: list[CatalogProduct]
    products_unavailable: bool = False
