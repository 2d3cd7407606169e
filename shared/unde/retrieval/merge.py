"""Candidates from pgvector and Ximilar, merged and de-duplicated by (brand, external_id).

Both sources score on the same scale — cosine similarity, 1 = identical (Ximilar distances
are converted by `unde.providers.ximilar.mapping.ximilar_similarity`) — so "keep the better
score" is a plain max. A SKU found by both is marked `source="both"`; its catalog metadata
comes from pgvector (written by the indexer from `raw_products`) with gaps filled from
Ximilar's fields. Order: score descending, then pgvector before Ximilar, then the key, so the
result is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Source = Literal["pgvector", "ximilar", "both"]

#: The metadata keys a candidate carries (CONTRACTS.md, vision gateway /search).
METADATA_KEYS = ("name", "price", "currency", "category", "product_type", "colour", "pattern",
                 "material", "image_kinds")
_SOURCE_ORDER = {"both": 0, "pgvector": 1, "ximilar": 2}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One SKU proposed by visual search."""

    brand: str
    external_id: str
    score: float
    source: Source
    image_urls: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.brand, self.external_id

    def to_json(self) -> dict[str, Any]:
        return {"brand": self.brand, "external_id": self.external_id,
                "score": round(self.score, 6), "source": self.source,
                "image_urls": list(self.image_urls), "metadata": dict(self.metadata)}


def catalog_metadata(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """The contract's metadata keys out of a catalog/collection record (missing → None)."""
    raw = raw or {}
    return {key: raw.get(key) for key in METADATA_KEYS}


def _combine(pg: Candidate, xi: Candidate) -> Candidate:
    metadata = dict(pg.metadata)
    for key, value in xi.metadata.items():
        if metadata.get(key) is None and value is not None:
            metadata[key] = value
    return replace(pg, score=max(pg.score, xi.score), source="both",
                   image_urls=pg.image_urls or xi.image_urls, metadata=metadata)


def best_per_key(candidates: Iterable[Candidate]) -> dict[tuple[str, str], Candidate]:
    """One candidate per (brand, external_id) within one source: the best-scoring one."""
    best: dict[tuple[str, str], Candidate] = {}
    for candidate in candidates:
        known = best.get(candidate.key)
        if known is None or candidate.score > known.score:
            best[candidate.key] = candidate
    return best


def merge_candidates(pgvector: Iterable[Candidate], ximilar: Iterable[Candidate],
                     top_k: int) -> list[Candidate]:
    """Merge both sources, one entry per SKU with the better score, best `top_k` first."""
    merged = best_per_key(pgvector)
    for key, candidate in best_per_key(ximilar).items():
        known = merged.get(key)
        merged[key] = candidate if known is None else _combine(known, candidate)
    ordered = sorted(merged.values(),
                     key=lambda c: (-c.score, _SOURCE_ORDER[c.source], c.brand, c.external_id))
    return ordered[:top_k]
