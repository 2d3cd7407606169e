"""Dual retrieval: pgvector and Ximilar search combined per `SEARCH_BACKEND` — the spec's rules.

- `pgvector`: embed the crop (embedder function), kNN among the mall's brands, gate. Never
  Ximilar (a `force_ximilar` re-query is answered from pgvector and noted in `degraded`).
- `conditional`: pgvector, then Ximilar TOP-`ximilar_top_k` only when the gate is not
  confident (or `force_ximilar`); any Ximilar failure or time-out degrades to pgvector alone.
- `dual`: pgvector and Ximilar concurrently, always; Ximilar failures degrade as above.
- `ximilar`: Ximilar only (no embedding, no pgvector); its failure is the request's failure.

Embedder or pgvector down: `conditional`/`dual` answer from Ximilar alone (when configured),
`pgvector` fails with 503 and the reason. Every degradation is named in `degraded`; nothing
degrades silently. The I/O legs are passed in as callables so the policy reads top to bottom.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from unde.errors import StoreError, UpstreamError, UpstreamUnavailable
from unde.retrieval.gating import Gate, gate_confidence
from unde.retrieval.merge import Candidate, merge_candidates
from unde.settings import SearchBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Embedding:
    vector: list[float]
    model_version: str


@dataclass(frozen=True, slots=True)
class XimilarHits:
    candidates: list[Candidate]
    credits: int


EmbedFn = Callable[[bytes], Awaitable[Embedding]]
PgvectorFn = Callable[[Embedding, int, Sequence[str] | None], Awaitable[list[Candidate]]]
XimilarFn = Callable[[bytes, int, Sequence[str] | None], Awaitable[XimilarHits]]


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One crop to search: `brands` None means no mall filter."""

    image: bytes
    top_k: int
    brands: Sequence[str] | None
    force_ximilar: bool = False


@dataclass(slots=True)
class SearchOutcome:
    """What `/search` answers (CONTRACTS.md)."""

    candidates: list[Candidate]
    pgvector_confident: bool = False
    used_ximilar: bool = False
    pgvector_top1_score: float | None = None
    pgvector_margin: float | None = None
    ximilar_top1_score: float | None = None
    embedding: list[float] | None = None
    model_version: str | None = None
    credits: int = 0
    degraded: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "candidates": [c.to_json() for c in self.candidates],
            "pgvector_confident": self.pgvector_confident,
            "used_ximilar": self.used_ximilar,
            "pgvector_top1_score": self.pgvector_top1_score,
            "pgvector_margin": self.pgvector_margin,
            "ximilar_top1_score": self.ximilar_top1_score,
            "embedding": self.embedding,
            "model_version": self.model_version,
            "credits": self.credits,
            "degraded": self.degraded,
        }


@dataclass(frozen=True, slots=True)
class _PgResult:
    candidates: list[Candidate]
    gate: Gate
    embedding: Embedding


class DualRetrieval:
    """The search policy; one per process, built from settings."""

    def __init__(self, *, backend: SearchBackend, threshold: float, margin: float,
                 ximilar_top_k: int, embed: EmbedFn, pgvector: PgvectorFn,
                 ximilar: XimilarFn | None) -> None:
        self.backend = backend
        self.threshold = threshold
        self.margin = margin
        self.ximilar_top_k = ximilar_top_k
        self._embed = embed
        self._pgvector = pgvector
        self._ximilar = ximilar

    async def search(self, query: SearchQuery) -> SearchOutcome:
        """Run the backend's policy for one crop."""
        if self.backend == "ximilar":
            return await self._ximilar_only(query, degraded=[])
        if self.backend == "dual":
            return await self._dual(query)
        return await self._pgvector_first(query)

    # ---- the policies ------------------------------------------------------------------

    async def _pgvector_first(self, query: SearchQuery) -> SearchOutcome:
        try:
            pg = await self._pgvector_leg(query)
        except (UpstreamError, StoreError) as exc:
            return await self._without_pgvector(query, exc)
        outcome = self._from_pgvector(pg, query)
        wants_ximilar = query.force_ximilar or not pg.gate.confident
        if self.backend == "pgvector":
            if query.force_ximilar:
                outcome.degraded.append("ximilar_disabled_by_backend")
            return outcome
        if not wants_ximilar:
            return outcome
        hits = await self._ximilar_leg(query, outcome.degraded)
        return self._with_ximilar(outcome, pg.candidates, hits, query.top_k)

    async def _dual(self, query: SearchQuery) -> SearchOutcome:
        degraded: list[str] = []
        ximilar_task = asyncio.create_task(self._ximilar_leg(query, degraded))
        try:
            pg = await self._pgvector_leg(query)
        except (UpstreamError, StoreError) as exc:
            ximilar_task.cancel()
            await asyncio.gather(ximilar_task, return_exceptions=True)
            return await self._without_pgvector(query, exc)
        except BaseException:
            ximilar_task.cancel()
            raise
        hits = await ximilar_task
        outcome = self._from_pgvector(pg, query)
        outcome.degraded.extend(degraded)
        return self._with_ximilar(outcome, pg.candidates, hits, query.top_k)

    async def _without_pgvector(self, query: SearchQuery, exc: Exception) -> SearchOutcome:
        reason = _leg_failure(exc)
        if self.backend == "pgvector" or self._ximilar is None:
            raise UpstreamUnavailable(
                "search", f"{reason}: {exc}; SEARCH_BACKEND={self.backend} "
                f"{'has no Ximilar fallback' if self.backend == 'pgvector' else 'and Ximilar is not configured'}",
            ) from exc
        log.warning("pgvector leg failed (%s), answering from Ximilar alone", exc)
        return await self._ximilar_only(query, degraded=[reason])

    async def _ximilar_only(self, query: SearchQuery, *, degraded: list[str]) -> SearchOutcome:
        if self._ximilar is None:
            raise UpstreamUnavailable("ximilar", "SEARCH_BACKEND=ximilar needs XIMILAR_API_TOKEN "
                                      "and XIMILAR_COLLECTION_ID")
        hits = await self._ximilar(query.image, self.ximilar_top_k, query.brands)
        outcome = SearchOutcome(candidates=[], degraded=list(degraded))
        return self._with_ximilar(outcome, [], hits, query.top_k)

    # ---- legs --------------------------------------------------------------------------

    async def _pgvector_leg(self, query: SearchQuery) -> _PgResult:
        embedding = await self._embed(query.image)
        candidates = await self._pgvector(embedding, query.top_k, query.brands)
        gate = gate_confidence([c.score for c in candidates], self.threshold, self.margin)
        return _PgResult(candidates, gate, embedding)

    async def _ximilar_leg(self, query: SearchQuery, degraded: list[str]) -> XimilarHits | None:
        """Ximilar's answer, or None with the reason appended to `degraded`."""
        if self._ximilar is None:
            degraded.append("ximilar_not_configured")
            return None
        try:
            return await self._ximilar(query.image, self.ximilar_top_k, query.brands)
        except UpstreamError as exc:
            log.warning("Ximilar search failed, continuing with pgvector alone: %s", exc)
            degraded.append("ximilar_search_timeout" if exc.code == "upstream_timeout"
                            else "ximilar_search_failed")
            return None

    # ---- shaping -----------------------------------------------------------------------

    def _from_pgvector(self, pg: _PgResult, query: SearchQuery) -> SearchOutcome:
        return SearchOutcome(
            candidates=pg.candidates[:query.top_k],
            pgvector_confident=pg.gate.confident,
            pgvector_top1_score=pg.gate.top1,
            pgvector_margin=pg.gate.margin,
            embedding=pg.embedding.vector,
            model_version=pg.embedding.model_version,
        )

    @staticmethod
    def _with_ximilar(outcome: SearchOutcome, pgvector: list[Candidate],
                      hits: XimilarHits | None, top_k: int) -> SearchOutcome:
        if hits is None:
            return outcome
        outcome.used_ximilar = True
        outcome.credits += hits.credits
        outcome.ximilar_top1_score = max((c.score for c in hits.candidates), default=None)
        outcome.candidates = merge_candidates(pgvector, hits.candidates, top_k)
        return outcome


def _leg_failure(exc: Exception) -> str:
    if isinstance(exc, StoreError):
        return "pgvector_unavailable"
    return "embedder_unavailable"
