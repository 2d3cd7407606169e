"""The offline reranker (local default): stored catalog embeddings + semantic agreement.

visual = an aggregate of the cosine similarities between the crop's embedding and ALL of the
SKU's stored photos (all 5–7 of them) in production ``sku_image_embeddings`` of the same model
version, read with one SQL statement for all candidates (it returns every SKU's similarities,
best first). Catalog photos are never embedded at query time. The crop's embedding comes from
the caller (the gateway's /search returns it); without one, a `CropEmbedder` may produce it
(the embedder function). When no vector can be had, or a SKU has no stored photo of that model
version, its search score stands in as visual and the reason says so.

The aggregate is one of `VISUAL_AGGREGATES` (default ``best``), chosen by a stated rule: an
aggregate replaces ``best`` only if it wins on the tuning seed (7, 398 street crops) AND on the
held-out seed (11, 419 crops) of ``bench/rerank_quality.py``. Measured top-1 (seed 7 / 11):
best 0.824 / 0.819, mean of the best 2 0.804 / 0.831, of the best 3 0.804 / 0.821, mean of all
0.784 / 0.792 — none wins on both, so ``best`` stays; the others remain selectable and measured.

The crop's garment tags are assumed to come from the offline tagger (``tag_provider``
``local``) unless they say otherwise — see `unde.rerank.combine.FIELD_RELIABILITY`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import psycopg
from psycopg_pool import AsyncConnectionPool

from unde.errors import StoreError, UndeError
from unde.rerank.candidates import RankedCandidate, RerankCandidate, VisualEvidence
from unde.rerank.combine import LOCAL_TAGGER, Weights, rank

#: Returns (embedding, model_version) for the crop, or raises an UndeError.
CropEmbedder = Callable[[], Awaitable[tuple[Sequence[float], str]]]

SKU_VISUAL_SQL = """
SELECT s.brand, s.sku_id,
       array_agg(s.similarity ORDER BY s.similarity DESC, s.image_rank) AS similarities,
       (array_agg(s.image_rank ORDER BY s.similarity DESC, s.image_rank))[1] AS best_rank
FROM (
  SELECT c.brand, c.sku_id, e.image_rank, 1 - (e.embedding <=> %(query)s) AS similarity
  FROM unnest(%(brands)s::text[], %(skus)s::text[]) AS c(brand, sku_id)
  JOIN sku_image_embeddings e
    ON e.brand = c.brand AND e.sku_id = c.sku_id AND e.model_version = %(model_version)s
  WHERE e.embedding IS NOT NULL
) s
GROUP BY s.brand, s.sku_id
"""

#: How a SKU's photo similarities (best first) become one visual score.
VisualAggregate = Literal["best", "top2", "top3", "mean"]
VISUAL_AGGREGATES: Final[dict[str, Callable[[Sequence[float]], float]]] = {
    "best": lambda sims: sims[0],
    "top2": lambda sims: float(np.mean(sims[:2])),
    "top3": lambda sims: float(np.mean(sims[:3])),
    "mean": lambda sims: float(np.mean(sims)),
}
_AGGREGATE_LABEL: Final[dict[str, str]] = {
    "best": "best", "top2": "mean of the best 2", "top3": "mean of the best 3", "mean": "mean"}


@dataclass(frozen=True, slots=True)
class StoredMatch:
    """A SKU's stored photos against the crop: every cosine similarity, best first."""

    similarities: tuple[float, ...]
    best_rank: int

    @property
    def similarity(self) -> float:
        """The best similarity (what the search itself keeps per SKU)."""
        return self.similarities[0]

    @property
    def photos(self) -> int:
        return len(self.similarities)

    def aggregate(self, how: VisualAggregate) -> float:
        """The visual score by `how` (see `VISUAL_AGGREGATES`)."""
        return VISUAL_AGGREGATES[how](self.similarities)


async def stored_photo_similarity(pool: AsyncConnectionPool, query: np.ndarray, model_version: str,
                                  keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredMatch]:
    """Every stored photo's cosine similarity per (brand, sku_id), best first, one query."""
    if not keys:
        return {}
    params: dict[str, Any] = {
        "query": np.asarray(query, dtype=np.float32),
        "model_version": model_version,
        "brands": [brand for brand, _ in keys],
        "skus": [sku for _, sku in keys],
    }
    try:
        async with pool.connection() as conn:
            rows = await (await conn.execute(SKU_VISUAL_SQL, params)).fetchall()
    except psycopg.Error as exc:
        raise StoreError(f"reading catalog embeddings failed: {exc}") from exc
    return {(brand, sku): StoredMatch(tuple(float(x) for x in similarities), int(best_rank))
            for brand, sku, similarities, best_rank in rows}


def _fallback(candidate: RerankCandidate, why: str) -> VisualEvidence:
    if not candidate.has_images:
        return VisualEvidence(None, f"no catalog photos and {why}: ranked on semantics only")
    return VisualEvidence(candidate.search_score,
                          f"{why}: visual = search score {candidate.search_score:.3f}")


class OfflineReranker:
    """Reranks candidates from the production DB's stored embeddings; no outside service."""

    provider = "local"

    def __init__(self, pool: AsyncConnectionPool, weights: Weights, *,
                 visual_aggregate: VisualAggregate = "best", tag_provider: str = LOCAL_TAGGER) -> None:
        if visual_aggregate not in VISUAL_AGGREGATES:
            raise ValueError(f"unknown visual aggregate {visual_aggregate!r}")
        self.pool = pool
        self.weights = weights
        self.visual_aggregate: VisualAggregate = visual_aggregate
        #: whose garment tags to assume when the tags do not name their provider
        self.tag_provider = tag_provider

    async def rerank(self, candidates: Sequence[RerankCandidate], tags: Mapping[str, Any], *,
                     embedding: Sequence[float] | None, model_version: str | None,
                     embed_crop: CropEmbedder | None = None) -> list[RankedCandidate]:
        """Rank `candidates` for the crop; see the module docstring for the rules."""
        if not candidates:
            return []
        missing_why = "no crop embedding"
        if embedding is None and embed_crop is not None:
            try:
                embedding, model_version = await embed_crop()
            except UndeError as exc:
                missing_why = f"crop could not be embedded ({exc})"
        visuals = await self._visuals(candidates, embedding, model_version, missing_why)
        return rank(candidates, visuals, tags, self.weights, default_tag_provider=self.tag_provider)

    async def _visuals(self, candidates: Sequence[RerankCandidate], embedding: Sequence[float] | None,
                       model_version: str | None, missing_why: str) -> dict[str, VisualEvidence]:
        if embedding is None or model_version is None:
            return {c.sku_id: _fallback(c, missing_why) for c in candidates}
        query = np.asarray(embedding, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm == 0.0:
            return {c.sku_id: _fallback(c, "crop embedding is all zeros") for c in candidates}
        keys = list(dict.fromkeys((c.brand, c.external_id) for c in candidates))
        stored = await stored_photo_similarity(self.pool, query / norm, model_version, keys)
        visuals: dict[str, VisualEvidence] = {}
        for candidate in candidates:
            match = stored.get((candidate.brand, candidate.external_id))
            if match is None:
                visuals[candidate.sku_id] = _fallback(
                    candidate, f"no stored photo embeddings of {model_version}")
                continue
            score = match.aggregate(self.visual_aggregate)
            visuals[candidate.sku_id] = VisualEvidence(
                min(1.0, max(0.0, score)),
                f"{_AGGREGATE_LABEL[self.visual_aggregate]} of {match.photos} stored photos "
                f"(best: rank {match.best_rank}), cosine {score:.3f}")
        return visuals
