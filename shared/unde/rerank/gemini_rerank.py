"""Gemini context tagging and visual rerank (the production reranker).

/tag sends the crop and asks for style, occasion, brand_style and season. /rerank compares
the crop with each candidate's best on-model photo, one call per candidate, all candidates
at once (the client bounds how many are in flight), so 20 candidates take about one call's
latency. A candidate whose photo cannot be fetched or whose answer fails validation twice
keeps its search score as visual, with the reason recorded; a candidate without photos is
ranked on semantics. If Gemini fails for every candidate (down, breaker open), the whole
rerank fails with `UpstreamUnavailable` so the orchestrator falls back to search scores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from unde.errors import UndeError, UpstreamError, UpstreamUnavailable
from unde.providers.gemini import GeminiClient, image_part, text_part
from unde.rerank.candidates import RankedCandidate, RerankCandidate, TokenUsage, VisualEvidence
from unde.rerank.combine import Weights, rank
from unde.rerank.context_rules import ContextTags
from unde.vision.images import decode_image, encode_jpeg

#: Fetches a catalog photo's bytes by URL (raises an UndeError when it cannot).
PhotoFetcher = Callable[[str], Awaitable[bytes]]

TAG_PROMPT = (
    "The image is a crop of one garment from a street photo. Describe its context for a "
    "fashion shop: style (e.g. casual, smart, sporty, streetwear, romantic), occasion (e.g. "
    "everyday, office, party, sport, beach), brand_style (mass market, premium, luxury, "
    "sportswear, fast fashion), season (spring-summer, autumn-winter, all-season). Use null "
    "for a field you cannot judge from the image. Answer with JSON only."
)
COMPARE_PROMPT = (
    "Image 1 is a crop from a street photo. Image 2 is a catalog photo of the product "
    "{product}. Is it the same item? Compare silhouette, colour, texture and details. "
    "Answer with JSON: same_item, score from 0 (different item) to 1 (certainly the same "
    "item), and a one-sentence reason."
)
REASON_CHARS = 240


class ContextJudgement(BaseModel):
    """Gemini's answer to /tag."""

    style: str | None
    occasion: str | None
    brand_style: str | None
    season: str | None


class VisualJudgement(BaseModel):
    """Gemini's answer for one crop / catalog photo pair."""

    same_item: bool
    score: float = Field(ge=0.0, le=1.0)
    reason: str


def prepare_jpeg(data: bytes, max_side: int, max_pixels: int, field: str) -> bytes:
    """Decode (validating), shrink to `max_side` and re-encode as JPEG (CPU; run in a thread)."""
    image = decode_image(data, max_pixels=max_pixels, field=field)
    image.thumbnail((max_side, max_side))
    return encode_jpeg(image, quality=85)


def _product(candidate: RerankCandidate) -> str:
    name = candidate.metadata.get("name")
    label = f"{candidate.brand} {name}" if isinstance(name, str) and name else candidate.sku_id
    return label[:120]


class GeminiReranker:
    """Context tags and visual scores from Gemini; ranking from `combine`."""

    provider = "gemini"

    def __init__(self, gemini: GeminiClient, fetch_photo: PhotoFetcher, weights: Weights, *,
                 max_side: int = 768, max_pixels: int = 40_000_000) -> None:
        self.gemini = gemini
        self.fetch_photo = fetch_photo
        self.weights = weights
        self.max_side = max_side
        self.max_pixels = max_pixels

    async def tag(self, crop_jpeg: bytes) -> tuple[ContextTags, TokenUsage]:
        """Context tags for a crop (prepared JPEG). Invalid output twice → UpstreamError."""
        answer = await self.gemini.generate_structured(
            [image_part(crop_jpeg), text_part(TAG_PROMPT)], ContextJudgement, "tag")
        if answer.value is None:
            raise UpstreamError("gemini", f"tag: {answer.error}")
        value = answer.value

        def clean(text: str | None) -> str | None:
            return (text.strip() or None) if text else None

        tags = ContextTags(style=clean(value.style), occasion=clean(value.occasion),
                           brand_style=clean(value.brand_style), season=clean(value.season))
        tags.basis.update({name: "gemini" for name in ("style", "occasion", "brand_style", "season")
                           if getattr(tags, name) is not None})
        return tags, answer.usage

    async def rerank(self, crop_jpeg: bytes, candidates: Sequence[RerankCandidate],
                     tags: Mapping[str, Any]) -> tuple[list[RankedCandidate], TokenUsage]:
        """Rank candidates by Gemini's visual judgement and semantic agreement."""
        usage = TokenUsage()
        if not candidates:
            return [], usage
        self.gemini.breaker.check()
        with_photos = [c for c in candidates if c.has_images]
        outcomes = await asyncio.gather(*(self._judge(crop_jpeg, c) for c in with_photos))
        visuals: dict[str, VisualEvidence] = {}
        failures: list[UpstreamError] = []
        for candidate, (evidence, spent, failure) in zip(with_photos, outcomes, strict=True):
            usage.add(spent.prompt, spent.output)
            visuals[candidate.sku_id] = evidence
            if failure is not None:
                failures.append(failure)
        if with_photos and len(failures) == len(with_photos):
            raise UpstreamUnavailable(
                "gemini", f"all {len(failures)} visual comparisons failed; first: {failures[0]}",
                retryable=any(f.retryable for f in failures))
        for candidate in candidates:
            if not candidate.has_images:
                visuals[candidate.sku_id] = VisualEvidence(
                    None, "no catalog photos: ranked on semantics only")
        return rank(candidates, visuals, tags, self.weights), usage

    async def _judge(self, crop_jpeg: bytes, candidate: RerankCandidate
                     ) -> tuple[VisualEvidence, TokenUsage, UpstreamError | None]:
        fallback = f"visual = search score {candidate.search_score:.3f}"
        url = candidate.best_on_model_photo()
        assert url is not None
        try:
            raw = await self.fetch_photo(url)
            photo = await asyncio.to_thread(prepare_jpeg, raw, self.max_side, self.max_pixels, "photo")
        except UndeError as exc:
            return (VisualEvidence(candidate.search_score,
                                   f"catalog photo unusable ({exc}): {fallback}"), TokenUsage(), None)
        parts = [image_part(crop_jpeg), image_part(photo),
                 text_part(COMPARE_PROMPT.format(product=_product(candidate)))]
        try:
            answer = await self.gemini.generate_structured(parts, VisualJudgement, "rerank")
        except UpstreamError as exc:
            return VisualEvidence(candidate.search_score, f"gemini failed ({exc}): {fallback}"), \
                TokenUsage(), exc
        if answer.value is None:
            return (VisualEvidence(candidate.search_score, f"gemini {answer.error}: {fallback}"),
                    answer.usage, None)
        verdict = answer.value
        reason = f"gemini: {'same item' if verdict.same_item else 'different item'}, " \
                 f"{verdict.reason.strip()[:REASON_CHARS]}"
        return VisualEvidence(verdict.score, reason), answer.usage, None
