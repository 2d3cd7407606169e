"""The offline reranker (local default): stored catalog embeddings + semantic agreement.

visual = the best cosine similarity between the crop's embedding and ANY of the SKU's
stored photos (all 5–7 of them) in production ``sku_image_embeddings`` of the same model
version, read with one SQL statement for all candidates. Catalog photos are never embedded
at query time. The crop's embedding comes from the caller (the gateway's /search returns
it); without one, a `CropEmbedder` may produce it (the embedder function). When no vector
can be had, or a SKU has no stored photo of that model version, its search score stands in
as visual and the reason says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg_pool import AsyncConnectionPool

from unde.errors import StoreError, UndeError
from unde.rerank.candidates import RankedCandidate, RerankCandidate, VisualEvidence
from unde.rerank.combine import Weights, rank

#: Returns (embedding, model_version) for the crop, or raises an UndeError.
CropEmbedder = Callable[[], Awaitable[tuple[Sequence[float], str]]]

SKU_VISUAL_SQL = """
SELECT c.brand, c.sku_id,
       max(1 - (e.embedding <=> %(query)s)) AS best,
       count(*) AS photos,
       (array_agg(e.image_rank ORDER BY e.embedding <=> %(query)s))[1] AS best_rank
FROM unnest(%(brands)s::text[], %(skus)s::text[]) AS c(brand, sku_id)
JOIN sku_image_embeddings e
  ON e.brand = c.brand AND e.sku_id = c.sku_id AND e.model_version = %(model_version)s
WHERE e.embedding IS NOT NULL
GROUP BY c.brand, c.sku_id
"""


@dataclass(frozen=True, slots=True)
class StoredMatch:
    """The best of a SKU's stored photos against the crop."""

    similarity: float
    photos: int
    best_rank: int


async def stored_photo_similarity(pool: AsyncConnectionPool, query: np.ndarray, model_version: str,
                                  keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredMatch]:
    """Best cosine similarity per (brand, sku_id) over all its stored photos, one query."""
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
    return {(brand, sku): StoredMatch(float(best), int(photos), int(best_rank))
            for brand, sku, best, photos, best_rank in rows}


def _fallback(candidate: RerankCandidate, why: str) -> VisualEvidence:
    if not candidate.has_images:
        return VisualEvidence(None, f"no catalog photos and {why}: ranked on semantics only")
    return VisualEvidence(candidate.search_score,
                          f"{why}: visual = search score {candidate.search_score:.3f}")


class OfflineReranker:
    """Reranks candidates from the production DB's stored embeddings; no outside service."""

    provider = "local"

    def __init__(self, pool: AsyncConnectionPool, weights: Weights) -> None:
        self.pool = pool
        self.weights = weights

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
        return rank(candidates, visuals, tags, self.weights)

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
            visuals[candidate.sku_id] = VisualEvidence(
                min(1.0, max(0.0, match.similarity)),
                f"best of {match.photos} stored photos (rank {match.best_rank}), "
                f"cosine {match.similarity:.3f}")
        return visuals
