"""One recognition: detect → every garment concurrently (bounded) → response + log record.

Replaces the spec's Celery task. The whole request has one budget (REQUEST_SOFT_DEADLINE_S,
or less when the caller sent a smaller one); every downstream call's timeout comes from what is
left of it, and travels with the call as the callee's budget (`unde.budget`). Detection gets at
most `DETECT_SHARE` of it, so a slow detector (Ximilar falling back to the offline one) still
leaves the garments time. When the budget runs out, garments still in flight are answered with
what is known so far and marked `partial`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from unde import budget
from unde.budget import Deadline
from unde.errors import BadInput, UndeError, UpstreamRejected, UpstreamUnavailable
from unde.pipeline import tiers
from unde.pipeline.item import Emit, ItemOutcome, ItemPipeline, assign_tier, cards_for, no_emit, search_order
from unde.response_shapes import DetectResponse as Detection
from unde.service_client import ServiceClient
from unde.settings import OrchestratorSettings, format_window

DETECT_TIMEOUT_S = 10.0
DETECT_SHARE = 0.5  # of the request's remaining budget, at most


@dataclass(slots=True)
class PhotoInput:
    """What the shopper sent: an image reference for the gateway, and who/where they are."""

    image: dict[str, Any]
    photo_url: str
    user_mall: str | None = None
    user_id: str | None = None


@dataclass(slots=True)
class Recognition:
    """The finished request: the response body and the log record."""

    response: dict[str, Any]
    record: dict[str, Any]


@dataclass(slots=True)
class Recognizer:
    """Runs recognitions against the gateway, reranker and staging DB."""

    settings: OrchestratorSettings
    gateway: ServiceClient
    reranker: ServiceClient
    staging: AsyncConnectionPool | None

    async def recognize(self, photo: PhotoInput, request_id: str | None = None,
                        emit: Emit = no_emit) -> Recognition:
        """The whole pipeline for one photo; upstream trouble degrades, never raises past detect."""
        request_id = request_id or str(uuid.uuid4())
        started = time.perf_counter()
        deadline = budget.current().within(self.settings.request_soft_deadline_s)
        detection, detect_ms = await self._detect(photo, deadline)
        degraded: list[str] = list(detection.degraded)
        items = sorted(detection.items, key=lambda i: -i.confidence)[: self.settings.max_items]
        await emit("detected", {"request_id": request_id, "items": [
            {"item_id": i.item_id, "bbox": i.bbox, "category": i.category, "type": i.type,
             "confidence": i.confidence} for i in items]})
        outcomes = [ItemOutcome(item) for item in items]
        pipeline = ItemPipeline(self.settings, self.gateway, self.reranker, self.staging, deadline,
                                photo.user_mall, emit)
        partial = await self._run_items(pipeline, outcomes, deadline)
        if partial:
            degraded.append("deadline")
        total_ms = round((time.perf_counter() - started) * 1000, 1)
        response = build_response(request_id, outcomes, detect_ms, total_ms, degraded, detection)
        await emit("done", {"request_id": request_id, "total_ms": total_ms, "partial": partial})
        record = build_record(photo, self.settings, outcomes, response)
        return Recognition(response, record)

    async def _detect(self, photo: PhotoInput, deadline: Deadline) -> tuple[Detection, float]:
        """Step 1. A photo the gateway rejects is the caller's 4xx; a gateway failure is a 503."""
        started = time.perf_counter()
        try:
            body = await self.gateway.post("/detect", {"image": photo.image}, deadline=deadline,
                                           timeout_s=min(DETECT_TIMEOUT_S, deadline.remaining() * DETECT_SHARE))
        except UpstreamRejected as exc:
            raise BadInput(f"photo rejected: {exc.detail}", field="photo",
                           status_code=exc.upstream_status) from exc
        except UndeError as exc:
            raise UpstreamUnavailable("vision-gateway", f"detection failed: {exc}") from exc
        return Detection.model_validate(body), round((time.perf_counter() - started) * 1000, 1)

    async def _run_items(self, pipeline: ItemPipeline, outcomes: list[ItemOutcome],
                         deadline: Deadline) -> bool:
        """Run every garment with bounded concurrency; True when the deadline cut some short."""
        limit = asyncio.Semaphore(self.settings.item_concurrency)

        async def bounded(outcome: ItemOutcome) -> None:
            async with limit:
                await pipeline.run(outcome)

        tasks = [asyncio.create_task(bounded(outcome)) for outcome in outcomes]
        if not tasks:
            return False
        done, pending = await asyncio.wait(tasks, timeout=deadline.remaining())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:  # a garment's steps degrade on upstream trouble; anything else is a bug
            if (error := task.exception()) is not None:
                raise error
        for outcome in outcomes:
            if not outcome.complete:
                finish_partial(outcome, self.settings)
        return bool(pending)


def finish_partial(outcome: ItemOutcome, settings: OrchestratorSettings) -> None:
    """Answer a garment the deadline cut short with what was known (search order)."""
    outcome.flag("deadline")
    assign_tier(outcome, settings)
    ranked = outcome.ranked or search_order(outcome.available)
    outcome.matches = cards_for(outcome, ranked[: tiers.SIMILAR_COUNT])


def _max(outcomes: list[ItemOutcome], step: str) -> int | None:
    values = [o.timings_ms[step] for o in outcomes if step in o.timings_ms]
    return round(max(values)) if values else None


def item_json(outcome: ItemOutcome) -> dict[str, Any]:
    search = outcome.search
    return {
        "item_id": outcome.item.item_id,
        "bbox": outcome.item.bbox,
        "category": outcome.item.category,
        "type": outcome.tags.get("type") or outcome.item.type,
        "confidence": outcome.item.confidence,
        "tags": outcome.tags,
        "match_type": outcome.match_type,
        "matches": outcome.matches,
        "fallback_matched_on": outcome.fallback_matched_on or None,
        "search": None if search is None else {
            "pgvector_confident": search.pgvector_confident, "used_ximilar": search.used_ximilar,
            "pgvector_top1_score": search.pgvector_top1_score,
            "pgvector_margin": search.pgvector_margin,
            "ximilar_top1_score": outcome.ximilar_top1_score,
            "requeried_ximilar": outcome.requeried_ximilar,
            "requery_used_ximilar": bool(outcome.requery and outcome.requery.used_ximilar),
        },
        "tier_basis": outcome.tier_basis,
        "availability_applied": outcome.availability_applied,
        "candidates_after_availability": len(outcome.available),
        "partial": not outcome.complete,
        "degraded": outcome.degraded,
        "timings_ms": outcome.timings_ms,
    }


def build_response(request_id: str, outcomes: list[ItemOutcome], detect_ms: float, total_ms: float,
                   degraded: list[str], detection: Detection) -> dict[str, Any]:
    all_degraded = sorted({*degraded, *(d for o in outcomes for d in o.degraded)})
    return {
        "request_id": request_id,
        "items": [item_json(o) for o in outcomes],
        "timings_ms": {
            "detection": detect_ms, "search": _max(outcomes, "search"),
            "tagging": _max(outcomes, "tagging"), "availability": _max(outcomes, "availability"),
            "rerank": _max(outcomes, "rerank"), "total": total_ms,
        },
        "total_ms": total_ms,
        "credits": detection.credits + sum(o.credits for o in outcomes),
        "degraded": all_degraded,
    }


def build_record(photo: PhotoInput, settings: OrchestratorSettings, outcomes: list[ItemOutcome],
                 response: dict[str, Any]) -> dict[str, Any]:
    """The `recognition_requests` row for a finished `response`. Scalar calibration columns
    describe the first (most confident) garment; every garment's figures are in `search_results`."""
    first = outcomes[0] if outcomes else None
    search = first.search if first else None
    timings = response["timings_ms"]
    return {
        "id": response["request_id"],
        "user_id": _uuid_or_none(photo.user_id),
        "photo_url": photo.photo_url,
        "user_mall": photo.user_mall,
        "detected_items": [o.item.model_dump(exclude={"crop"}) for o in outcomes],
        "detection_time_ms": round(timings["detection"]),
        "tags": [o.tags for o in outcomes],
        "tagging_time_ms": timings["tagging"],
        "search_results": [search_summary(o) for o in outcomes],
        "search_time_ms": timings["search"],
        "availability_time_ms": timings["availability"],
        "final_matches": [{"item_id": o.item.item_id, "match_type": o.match_type,
                           "tier_basis": o.tier_basis,
                           "matches": [{k: m.get(k) for k in ("brand", "external_id", "score")}
                                       for m in o.matches]} for o in outcomes],
        "rerank_time_ms": timings["rerank"],
        "total_time_ms": round(timings["total"]),
        "items_detected": len(outcomes),
        "items_matched": sum(1 for o in outcomes if o.match_type in ("exact", "similar")),
        "used_ximilar_booster": any(o.used_ximilar_search for o in outcomes),
        "used_ximilar_tagging": any(o.used_ximilar_tagging for o in outcomes),
        "pgvector_top1_score": search.pgvector_top1_score if search else None,
        "pgvector_margin": search.pgvector_margin if search else None,
        "ximilar_top1_score": first.ximilar_top1_score if first else None,
        "candidates_after_availability": len(first.available) if first else None,
        "flags": {"tagging_mode": settings.tagging_mode,
                  "availability_window": format_window(settings.availability_window),
                  "min_candidates": settings.min_candidates,
                  "confidence_high": settings.confidence_high,
                  "confidence_medium": settings.confidence_medium},
        "degradations": response["degraded"],
        "ximilar_credits": response["credits"],
    }


def search_summary(outcome: ItemOutcome) -> dict[str, Any]:
    """One garment's search figures for the log (calibration reads these per garment)."""
    summary: dict[str, Any] = {"item_id": outcome.item.item_id,
                               "candidates_after_availability": len(outcome.available)}
    if outcome.search is not None:
        summary.update(item_json(outcome)["search"] or {})
        summary["tier_basis"] = outcome.tier_basis
        summary["top"] = [c.model_dump(include={"brand", "external_id", "score", "source"})
                          for c in outcome.search.candidates[:20]]
    return summary


def _uuid_or_none(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"unde-user:{value}"))
