"""Steps 2–4 for one detected garment: search ∥ tags → availability → rerank → tier.

Gemini context tags always run concurrently with search; Ximilar tags run with it when
`TAGGING_MODE=always`, or after it only when search was not confident (`on_demand`). Every
upstream or database failure degrades instead of failing: the outcome records what happened in
`degraded`. Anything else is a bug and propagates (with its traceback) to the error boundary.
Database calls wait for their connection and run their statements within the request's
budget (`unde.db.pool.budgeted`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from unde.availability import FallbackQuery, StoreStock, attribute_fallback, stock_in_mall
from unde.budget import BudgetSpent, Deadline
from unde.db.pool import budgeted
from unde.errors import UndeError
from unde.pipeline import tiers
from unde.pipeline.matches import candidate_card, fallback_card
from unde.response_shapes import CandidateOut as Candidate
from unde.response_shapes import DetectedItem
from unde.response_shapes import RankedOut as Ranked
from unde.response_shapes import RerankResponse as RerankResult
from unde.response_shapes import SearchResponse as SearchResult
from unde.service_client import ServiceClient
from unde.settings import OrchestratorSettings

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]

SEARCH_TIMEOUT_S = 10.0
TAG_TIMEOUT_S = 10.0
RERANK_TIMEOUT_S = 15.0
#: Search and tagging get at most this share of the budget left when they start, so a slow
#: upstream (its fallback answering at the end of the share) still leaves time to rerank.
STEP_SHARE = 0.5
DB_WAIT_S = 2.0  # longest wait for a staging connection (less when the budget has less)
#: What a database step may fail with; anything else is a bug and must surface.
DB_ERRORS = (psycopg.Error, BudgetSpent)
#: The search said Ximilar cannot answer now: a re-query would repeat the failure.
XIMILAR_DOWN = frozenset({"ximilar_search_failed", "ximilar_search_timeout", "ximilar_not_configured",
                          "ximilar_disabled_by_backend"})


async def no_emit(event: str, data: dict[str, Any]) -> None:
    """The default event sink: a non-streamed request emits to nobody."""
    return None


@dataclass(slots=True)
class ItemOutcome:
    """Everything known about one garment so far; filled step by step (kept on a deadline)."""

    item: DetectedItem
    search: SearchResult | None = None
    requery: SearchResult | None = None  # the MIN_CANDIDATES re-query's answer (Ximilar forced)
    tags: dict[str, Any] = field(default_factory=dict)
    available: list[Candidate] = field(default_factory=list)
    stock: dict[tuple[str, str], list[StoreStock]] = field(default_factory=dict)
    ranked: list[Ranked] = field(default_factory=list)
    reranked: bool = False  # `ranked` carries the reranker's scores (else search scores)
    match_type: tiers.MatchType = "style"
    tier_basis: tiers.TierBasis = "none"
    matches: list[dict[str, Any]] = field(default_factory=list)
    fallback_matched_on: list[str] = field(default_factory=list)
    used_ximilar_tagging: bool = False
    requeried_ximilar: bool = False
    availability_applied: bool = False
    credits: int = 0
    degraded: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    complete: bool = False

    @property
    def crop(self) -> dict[str, Any]:
        return self.item.crop.model_dump()

    def record(self, step: str, started: float) -> None:
        self.timings_ms[step] = round((time.perf_counter() - started) * 1000, 1)

    def flag(self, degradation: str) -> None:
        if degradation not in self.degraded:
            self.degraded.append(degradation)

    @property
    def searches(self) -> list[SearchResult]:
        """Every search answer of this garment: the first, then the re-query's."""
        return [s for s in (self.search, self.requery) if s is not None]

    @property
    def used_ximilar_search(self) -> bool:
        return any(s.used_ximilar for s in self.searches)

    @property
    def ximilar_top1_score(self) -> float | None:
        scores = [s.ximilar_top1_score for s in self.searches if s.ximilar_top1_score is not None]
        return max(scores, default=None)


@dataclass(slots=True)
class ItemPipeline:
    """Runs one garment through the steps against the gateway, reranker and staging DB."""

    settings: OrchestratorSettings
    gateway: ServiceClient
    reranker: ServiceClient
    staging: AsyncConnectionPool | None
    deadline: Deadline
    user_mall: str | None
    emit: Emit = no_emit

    async def run(self, outcome: ItemOutcome) -> ItemOutcome:
        """All steps for one garment; never raises for upstream trouble."""
        started = time.perf_counter()
        gemini_tags = asyncio.create_task(self._gemini_tags(outcome))
        ximilar_tags = (asyncio.create_task(self._ximilar_tags(outcome))
                        if self.settings.tagging_mode == "always" else None)
        await self._search(outcome)
        if ximilar_tags is None and not (outcome.search and outcome.search.pgvector_confident):
            ximilar_tags = asyncio.create_task(self._ximilar_tags(outcome))
        await self._availability(outcome)
        await self.emit("candidates", candidates_event(outcome))
        context = await gemini_tags
        garment = await ximilar_tags if ximilar_tags else {}
        outcome.tags = merge_tags(outcome.item, garment, context)
        outcome.record("tagging", started)
        await self._rerank(outcome)
        await self._tier(outcome)
        outcome.complete = True
        await self.emit("ranked", ranked_event(outcome))
        return outcome

    async def _call(self, client: ServiceClient, path: str, body: dict[str, Any], cap: float,
                    outcome: ItemOutcome, degraded: str, share: float = 1.0) -> dict[str, Any] | None:
        """One step's call, given at most `share` of what is left of the budget (and `cap`)."""
        try:
            return await client.post(path, body, deadline=self.deadline,
                                     timeout_s=min(cap, max(0.001, self.deadline.remaining() * share)))
        except UndeError as exc:
            log.warning("%s %s failed: %s", client.name, path, exc)
            outcome.degraded.append(degraded)
            return None

    async def _gemini_tags(self, outcome: ItemOutcome) -> dict[str, Any]:
        hints = {"type": outcome.item.type, "category": outcome.item.category}
        body = await self._call(self.reranker, "/tag", {"image": outcome.crop, "hints": hints},
                                TAG_TIMEOUT_S, outcome, "context_tags_unavailable", STEP_SHARE)
        return body or {}

    async def _ximilar_tags(self, outcome: ItemOutcome) -> dict[str, Any]:
        outcome.used_ximilar_tagging = True
        body = await self._call(self.gateway, "/tag", {"image": outcome.crop},
                                TAG_TIMEOUT_S, outcome, "garment_tags_unavailable", STEP_SHARE)
        outcome.credits += int((body or {}).get("credits") or 0)
        outcome.degraded.extend(d for d in (body or {}).get("degraded") or [] if d not in outcome.degraded)
        return body or {}

    async def _search(self, outcome: ItemOutcome, force_ximilar: bool = False) -> SearchResult | None:
        started = time.perf_counter()
        body = await self._call(self.gateway, "/search", {
            "image": outcome.crop, "category": outcome.item.category,
            "top_k": self.settings.search_top_k, "user_mall": self.user_mall,
            "force_ximilar": force_ximilar,
        }, SEARCH_TIMEOUT_S, outcome, "search_unavailable", STEP_SHARE)
        outcome.record("search_requery" if force_ximilar else "search", started)
        if body is None:
            return None
        result = SearchResult.model_validate(body)
        outcome.credits += result.credits
        outcome.degraded.extend(d for d in result.degraded if d not in outcome.degraded)
        if force_ximilar:
            outcome.requery = result
        else:
            outcome.search = result
        return result

    async def _availability(self, outcome: ItemOutcome) -> None:
        candidates = outcome.search.candidates if outcome.search else []
        if not self.user_mall:
            outcome.available = candidates[: self.settings.no_mall_top_n]
            return
        started = time.perf_counter()
        available = await self._in_stock(outcome, candidates)
        if available is not None and len(available) < self.settings.min_candidates and self._may_requery(outcome):
            outcome.requeried_ximilar = True
            extra = await self._search(outcome, force_ximilar=True)
            if extra is not None:
                merged = {c.key: c for c in [*candidates, *extra.candidates]}
                available = await self._in_stock(outcome, list(merged.values()))
        outcome.record("availability", started)
        if available is None:  # staging DB down: show search results, flagged
            outcome.available = candidates[: self.settings.no_mall_top_n]
            return
        outcome.availability_applied = True
        outcome.available = available[: self.settings.rerank_top_n]

    @staticmethod
    def _may_requery(outcome: ItemOutcome) -> bool:
        """Re-query with Ximilar only when the first search answered without Ximilar and did not
        report Ximilar failing (that search would fail again, and cost again)."""
        search = outcome.search
        return search is not None and not search.used_ximilar and not XIMILAR_DOWN & set(search.degraded)

    async def _in_stock(self, outcome: ItemOutcome, candidates: list[Candidate]) -> list[Candidate] | None:
        if self.staging is None:
            outcome.flag("availability_unavailable")
            return None
        try:
            async with budgeted(self.staging, self.deadline, DB_WAIT_S) as conn:
                stock = await stock_in_mall(conn, [c.key for c in candidates], self.user_mall or "",
                                            self.settings.availability_window)
        except DB_ERRORS as exc:
            log.warning("availability lookup failed: %s", exc)
            outcome.flag("availability_unavailable")
            return None
        outcome.stock.update(stock)
        return [c for c in candidates if c.key in stock]

    async def _rerank(self, outcome: ItemOutcome) -> None:
        if not outcome.available:
            return
        started = time.perf_counter()
        search = outcome.search
        body = await self._call(self.reranker, "/rerank", {
            "image": outcome.crop,
            "embedding": search.embedding if search else None,
            "model_version": search.model_version if search else None,
            "candidates": [c.model_dump(mode="json") for c in outcome.available],
            "tags": outcome.tags,
        }, RERANK_TIMEOUT_S, outcome, "rerank_unavailable")
        outcome.record("rerank", started)
        if body is None:
            outcome.ranked = search_order(outcome.available)
        else:
            outcome.ranked = RerankResult.model_validate(body).ranked
            outcome.reranked = True

    async def _tier(self, outcome: ItemOutcome) -> None:
        assign_tier(outcome, self.settings)
        if outcome.match_type != "style":
            outcome.matches = cards_for(outcome, tiers.shown(outcome.ranked, outcome.match_type))
            return
        if not outcome.tags.get("color") and not outcome.used_ximilar_tagging:
            outcome.tags = merge_tags(outcome.item, await self._ximilar_tags(outcome), outcome.tags)
        fallback = await self._fallback(outcome)
        # The shopper always gets an answer: the best visual candidates when nothing else matches.
        outcome.matches = fallback or cards_for(outcome, outcome.ranked[: tiers.SIMILAR_COUNT])

    async def _fallback(self, outcome: ItemOutcome) -> list[dict[str, Any]]:
        if self.staging is None:
            return []
        query = FallbackQuery(
            category=outcome.item.category, product_type=outcome.tags.get("type") or outcome.item.type,
            colour=outcome.tags.get("color"), mall=self.user_mall, limit=self.settings.fallback_limit)
        try:
            async with budgeted(self.staging, self.deadline, DB_WAIT_S) as conn:
                result = await attribute_fallback(conn, query, self.settings.availability_window)
        except DB_ERRORS as exc:
            log.warning("attribute fallback failed: %s", exc)
            outcome.flag("fallback_unavailable")
            return []
        outcome.fallback_matched_on = result.matched_on
        return [fallback_card(row) for row in result.rows]


_BOOKKEEPING = frozenset({"provider", "credits", "unknown", "degraded", "basis", "tokens"})


def merge_tags(item: DetectedItem, garment: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The spec's `{**ximilar_tags, **llm_tags}` over the detection's hints.

    The garment tagger's `probabilities` and its provider (as `tag_provider`) are kept: the
    reranker weighs each tag field by how reliable that tagger is.
    """
    merged: dict[str, Any] = {"category": item.category}
    if item.type:
        merged["type"] = item.type
    for source in (garment, context):
        for key, value in source.items():
            if key not in _BOOKKEEPING and value is not None:
                merged[key] = value
    if garment.get("provider"):
        merged["tag_provider"] = garment["provider"]
    return merged


def assign_tier(outcome: ItemOutcome, settings: OrchestratorSettings) -> None:
    """The garment's tier from its top score, and which score that was (see `tiers`).

    Without a rerank score the tier comes from the search score under the stricter rule, and
    the garment is flagged `tier_from_search_score`.
    """
    ranked = outcome.ranked or search_order(outcome.available)
    top = ranked[0].score if ranked else None
    high, medium = settings.confidence_high, settings.confidence_medium
    if top is None:
        outcome.match_type, outcome.tier_basis = "style", "none"
    elif outcome.reranked:
        outcome.match_type, outcome.tier_basis = tiers.tier_for(top, high, medium), "rerank"
    else:
        confident = bool(outcome.search and outcome.search.pgvector_confident)
        outcome.match_type = tiers.tier_without_rerank(top, confident, high, medium)
        outcome.tier_basis = "search"
        outcome.flag("tier_from_search_score")


def search_order(candidates: list[Candidate]) -> list[Ranked]:
    """Without the reranker: search order and search scores, as the tiers' input."""
    return [Ranked(brand=c.brand, external_id=c.external_id, sku_id=f"{c.brand}/{c.external_id}", score=c.score,
                   visual=None, semantic=None,
                   reason="search score (reranker unavailable)") for c in candidates]


def cards_for(outcome: ItemOutcome, ranked: list[Ranked]) -> list[dict[str, Any]]:
    by_key = {c.key: c for c in outcome.available}
    return [candidate_card(by_key[(r.brand, r.external_id)], outcome.stock, r)
            for r in ranked if (r.brand, r.external_id) in by_key]


def candidates_event(outcome: ItemOutcome) -> dict[str, Any]:
    """The first cards (search order, availability applied) for skeleton → result swap."""
    return {"item_id": outcome.item.item_id,
            "candidates": [candidate_card(c, outcome.stock) for c in outcome.available[:10]],
            "availability_applied": outcome.availability_applied}


def ranked_event(outcome: ItemOutcome) -> dict[str, Any]:
    return {"item_id": outcome.item.item_id, "match_type": outcome.match_type,
            "matches": outcome.matches}
