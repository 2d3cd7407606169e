"""Gemini context tagging and visual rerank (the production reranker).

/tag sends the crop and asks for style, occasion, brand_style and season. /rerank compares
the crop with each candidate's best on-model photo. With `RERANK_BATCH` = N > 1 one call
carries the crop once and up to N numbered catalog photos and asks for a verdict per
candidate (`[{index, same_item, score, reason}]`, Gemini's structured output); the answer is
validated (pydantic: scores in [0, 1]; here: every index once and in range). An unusable batch
answer (invalid JSON, a repeated or unknown index) falls back to one compare per candidate of
that batch — the first alone as a probe, the rest only if it worked, so a broken Gemini costs
one extra call per batch, not N. `RERANK_BATCH=1` is the spec's pairwise mode. Batches run
at once (the client bounds how many calls are in flight).

A candidate whose photo cannot be fetched keeps its search score as visual, with the reason
recorded; one Gemini gave no usable verdict for (failed call, invalid answer, missing from a
valid batch answer) keeps it too, and counts as a failed judgement. A candidate without photos
is ranked on semantics. If every judgement failed (Gemini down, breaker open, answers
malformed), the whole rerank fails with `UpstreamUnavailable` so the orchestrator falls back to
search scores and flags the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from unde.errors import UndeError, UpstreamError, UpstreamUnavailable
from unde.providers.gemini import GeminiClient, image_part, text_part
from unde.providers.gemini_policy import RetryBudget
from unde.rerank.candidates import RankedCandidate, RerankCandidate, TokenUsage, VisualEvidence
from unde.rerank.combine import Weights, rank
from unde.rerank.context_rules import ContextTags
from unde.rerank.photo_cache import PreparedPhotos
from unde.service_client import Deadline

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
BATCH_PROMPT = (
    "The first image is a crop of one garment from a street photo. Each following image is a "
    "catalog photo of a candidate product, announced by its number. For every candidate, is it "
    "the same item as the crop? Compare silhouette, colour, texture and details. Answer with a "
    "JSON array holding exactly one object per candidate: index (the candidate's number), "
    "same_item, score from 0 (different item) to 1 (certainly the same item), and a "
    "one-sentence reason."
)
CANDIDATE_LABEL = "Candidate {index}: {product}"
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


class IndexedJudgement(VisualJudgement):
    """One candidate's verdict in a batched answer (`index` is its number in the prompt)."""

    index: int


#: The batched answer's schema, as sent in `responseSchema`.
BatchJudgement = list[IndexedJudgement]


@dataclass(frozen=True, slots=True)
class Judged:
    """One candidate's visual evidence; `failure` when Gemini gave no usable verdict."""

    sku_id: str
    evidence: VisualEvidence
    failure: UpstreamError | None = None


def _product(candidate: RerankCandidate) -> str:
    name = candidate.metadata.get("name")
    label = f"{candidate.brand} {name}" if isinstance(name, str) and name else candidate.sku_id
    return label[:120]


def _fallback(candidate: RerankCandidate) -> str:
    return f"visual = search score {candidate.search_score:.3f}"


def _verdict(candidate: RerankCandidate, verdict: VisualJudgement) -> Judged:
    reason = f"gemini: {'same item' if verdict.same_item else 'different item'}, " \
             f"{verdict.reason.strip()[:REASON_CHARS]}"
    return Judged(candidate.sku_id, VisualEvidence(verdict.score, reason))


def _failed(candidate: RerankCandidate, failure: UpstreamError, what: str) -> Judged:
    return Judged(candidate.sku_id, VisualEvidence(
        candidate.search_score, f"gemini {what}: {_fallback(candidate)}"), failure)


def batch_problem(verdicts: Sequence[IndexedJudgement], size: int) -> str | None:
    """Why a schema-valid batched answer is still unusable (an index repeated or out of range)."""
    seen: set[int] = set()
    for verdict in verdicts:
        if not 1 <= verdict.index <= size:
            return f"index {verdict.index} is not a candidate (1..{size})"
        if verdict.index in seen:
            return f"index {verdict.index} answered twice"
        seen.add(verdict.index)
    return None


class GeminiReranker:
    """Context tags and visual scores from Gemini; ranking from `combine`."""

    provider = "gemini"

    def __init__(self, gemini: GeminiClient, photos: PreparedPhotos, weights: Weights, *,
                 batch_size: int = 1) -> None:
        self.gemini = gemini
        self.photos = photos
        self.weights = weights
        self.batch_size = batch_size

    def _budget(self, budget: RetryBudget | None) -> RetryBudget:
        return budget if budget is not None else RetryBudget(self.gemini.config.request_retries)

    async def tag(self, crop_jpeg: bytes, budget: RetryBudget | None = None,
                  deadline: Deadline | None = None) -> tuple[ContextTags, TokenUsage]:
        """Context tags for a crop (prepared JPEG). Invalid output twice → UpstreamError."""
        answer = await self.gemini.generate_structured(
            [image_part(crop_jpeg), text_part(TAG_PROMPT)], ContextJudgement, "tag",
            self._budget(budget), deadline)
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

    async def rerank(self, crop_jpeg: bytes, candidates: Sequence[RerankCandidate], tags: Mapping[str, Any],
                     budget: RetryBudget | None = None, deadline: Deadline | None = None
                     ) -> tuple[list[RankedCandidate], TokenUsage]:
        """Rank candidates by Gemini's visual judgement and semantic agreement."""
        usage = TokenUsage()
        if not candidates:
            return [], usage
        self.gemini.breaker.check()
        budget = self._budget(budget)
        with_photos = [c for c in candidates if c.has_images]
        photos = await asyncio.gather(*(self._photo(c) for c in with_photos))
        visuals: dict[str, VisualEvidence] = {}
        usable: list[tuple[RerankCandidate, bytes]] = []
        for candidate, photo in zip(with_photos, photos, strict=True):
            if isinstance(photo, VisualEvidence):
                visuals[candidate.sku_id] = photo
            else:
                usable.append((candidate, photo))
        size = self.batch_size
        batches = [usable[i:i + size] for i in range(0, len(usable), size)]
        outcomes = await asyncio.gather(*(self._judge(crop_jpeg, batch, usage, budget, deadline)
                                          for batch in batches))
        failures = [judged.failure for batch in outcomes for judged in batch if judged.failure is not None]
        visuals.update({judged.sku_id: judged.evidence for batch in outcomes for judged in batch})
        if usable and len(failures) == len(usable):
            raise UpstreamUnavailable(
                "gemini", f"all {len(failures)} visual comparisons failed; first: {failures[0]}",
                retryable=any(f.retryable for f in failures))
        for candidate in candidates:
            if not candidate.has_images:
                visuals[candidate.sku_id] = VisualEvidence(None, "no catalog photos: ranked on semantics only")
        return rank(candidates, visuals, tags, self.weights), usage

    async def _photo(self, candidate: RerankCandidate) -> bytes | VisualEvidence:
        url = candidate.best_on_model_photo()
        assert url is not None
        try:
            return await self.photos.jpeg(url, candidate.image_hash(url))
        except UndeError as exc:
            return VisualEvidence(candidate.search_score, f"catalog photo unusable ({exc}): {_fallback(candidate)}")

    async def _judge(self, crop: bytes, batch: list[tuple[RerankCandidate, bytes]], usage: TokenUsage,
                     budget: RetryBudget, deadline: Deadline | None) -> list[Judged]:
        if len(batch) == 1:
            return [await self._single(crop, *batch[0], usage, budget, deadline)]
        parts = [text_part(BATCH_PROMPT), image_part(crop)]
        for index, (candidate, photo) in enumerate(batch, start=1):
            parts += [text_part(CANDIDATE_LABEL.format(index=index, product=_product(candidate))),
                      image_part(photo)]
        try:
            answer = await self.gemini.generate_structured(parts, BatchJudgement, "rerank_batch", budget,
                                                           deadline, retry_invalid=False)
        except UpstreamError as exc:
            return [_failed(candidate, exc, f"failed ({exc})") for candidate, _ in batch]
        usage.add(answer.usage.prompt, answer.usage.output)
        problem = answer.error if answer.value is None else batch_problem(answer.value, len(batch))
        if problem is not None or answer.value is None:
            return await self._singles(crop, batch, usage, budget, deadline)
        by_index = {verdict.index: verdict for verdict in answer.value}
        missing = UpstreamError("gemini", "the batched answer has no verdict for this candidate")
        return [_verdict(candidate, by_index[i]) if i in by_index else _failed(candidate, missing, "gave no verdict")
                for i, (candidate, _) in enumerate(batch, start=1)]

    async def _singles(self, crop: bytes, batch: list[tuple[RerankCandidate, bytes]], usage: TokenUsage,
                       budget: RetryBudget, deadline: Deadline | None) -> list[Judged]:
        """One compare per candidate after an unusable batch answer: the first alone (a probe),
        the rest at once only if it gave a verdict."""
        probe = await self._single(crop, *batch[0], usage, budget, deadline)
        if probe.failure is not None:
            skipped = UpstreamError("gemini", f"not asked: the probe compare failed ({probe.failure})")
            return [probe, *(_failed(candidate, skipped, "batch unusable, probe failed") for candidate, _ in batch[1:])]
        rest = await asyncio.gather(*(self._single(crop, candidate, photo, usage, budget, deadline)
                                      for candidate, photo in batch[1:]))
        return [probe, *rest]

    async def _single(self, crop: bytes, candidate: RerankCandidate, photo: bytes, usage: TokenUsage,
                      budget: RetryBudget, deadline: Deadline | None) -> Judged:
        parts = [image_part(crop), image_part(photo),
                 text_part(COMPARE_PROMPT.format(product=_product(candidate)))]
        try:
            answer = await self.gemini.generate_structured(parts, VisualJudgement, "rerank", budget, deadline)
        except UpstreamError as exc:
            return _failed(candidate, exc, f"failed ({exc})")
        usage.add(answer.usage.prompt, answer.usage.output)
        if answer.value is None:
            return _failed(candidate, UpstreamError("gemini", f"compare: {answer.error}"), str(answer.error))
        return _verdict(candidate, answer.value)
