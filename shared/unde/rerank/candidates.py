"""What a reranker takes in and hands back: candidates from /search, ranked results.

Kept free of I/O and of any provider so both rerankers (Gemini, offline) and the score
combination speak the same types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ON_MODEL = "on_model"


@dataclass(frozen=True, slots=True)
class RerankCandidate:
    """One SKU as `/search` returned it: its search score, photos and catalog metadata."""

    brand: str
    external_id: str
    search_score: float
    image_urls: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sku_id(self) -> str:
        """The composite key as the contract spells it: ``brand/external_id``."""
        return f"{self.brand}/{self.external_id}"

    @property
    def has_images(self) -> bool:
        return bool(self.image_urls)

    def best_on_model_photo(self) -> str | None:
        """The photo to compare against: the first on-model one (per `metadata.image_kinds`),
        else the first photo, else None."""
        if not self.image_urls:
            return None
        kinds = self.metadata.get("image_kinds")
        if isinstance(kinds, Sequence) and not isinstance(kinds, str):
            for url, kind in zip(self.image_urls, kinds, strict=False):
                if kind == ON_MODEL:
                    return url
        return self.image_urls[0]


    def image_hash(self, url: str) -> str | None:
        """The content hash of photo `url` when `metadata.image_hashes` (aligned with
        `image_urls`) carries one."""
        hashes = self.metadata.get("image_hashes")
        if not isinstance(hashes, Sequence) or isinstance(hashes, str):
            return None
        for candidate_url, value in zip(self.image_urls, hashes, strict=False):
            if candidate_url == url and isinstance(value, str) and value:
                return value
        return None


@dataclass(frozen=True, slots=True)
class VisualEvidence:
    """A visual score for one candidate and where it came from (for the `reason`)."""

    score: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class RankedCandidate:
    """A candidate after reranking: visual, semantic, combined score and the reason."""

    brand: str
    external_id: str
    visual: float | None
    semantic: float
    score: float
    reason: str
    search_score: float

    @property
    def sku_id(self) -> str:
        return f"{self.brand}/{self.external_id}"

    def to_json(self) -> dict[str, Any]:
        """The contract's shape of one `ranked` entry."""
        return {
            "brand": self.brand,
            "external_id": self.external_id,
            "sku_id": self.sku_id,
            "visual": None if self.visual is None else round(self.visual, 6),
            "semantic": round(self.semantic, 6),
            "score": round(self.score, 6),
            "reason": self.reason,
        }


@dataclass(slots=True)
class TokenUsage:
    """Gemini tokens spent by one request."""

    prompt: int = 0
    output: int = 0

    def add(self, prompt: int, output: int) -> None:
        self.prompt += prompt
        self.output += output

    def to_json(self) -> dict[str, int]:
        return {"prompt": self.prompt, "output": self.output}
