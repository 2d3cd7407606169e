"""The Gemini client and reranker against the fake Gemini server, through the real SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fakes.gemini_server import API_KEY, FakeGemini
from tests.rerank.conftest import PhotoHost, jpeg
from unde.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from unde.fetch import FetchPolicy, fetch_bytes
from unde.metrics import GEMINI_TOKENS
from unde.providers.gemini import GeminiClient, GeminiConfig, image_part, split_api_url, text_part
from unde.providers.gemini_policy import RetryBudget
from unde.rerank.candidates import RerankCandidate
from unde.rerank.combine import Weights
from unde.rerank.gemini_rerank import GeminiReranker, VisualJudgement
from unde.rerank.photo_cache import PreparedPhotos
from unde.service_client import Deadline


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def client_for(url: str, http: httpx.AsyncClient, **overrides: object) -> GeminiClient:
    settings: dict[str, object] = {"api_key": API_KEY, "api_url": f"{url}/v1beta", "timeout_s": 2.0,
                                   "max_retries": 2, "retry_delay_s": 0.01, "concurrency": 4}
    settings.update(overrides)
    return GeminiClient(GeminiConfig(**settings), http)  # type: ignore[arg-type]


def reranker_for(client: GeminiClient, http: httpx.AsyncClient, host: PhotoHost, *, batch: int = 1,
                 cache_bytes: int = 1_000_000) -> GeminiReranker:
    policy = FetchPolicy.of([host.host], 1_000_000, 2.0)

    async def fetch(url: str) -> bytes:
        return await fetch_bytes(http, url, policy)

    photos = PreparedPhotos(fetch, max_side=64, max_pixels=40_000_000, max_bytes=cache_bytes)
    return GeminiReranker(client, photos, Weights(0.7, 0.3), batch_size=batch)


def compare_parts() -> list[Any]:
    return [image_part(jpeg("red")), image_part(jpeg((250, 5, 5))), text_part("same?")]


def test_api_url_spellings() -> None:
    assert split_api_url("https://generativelanguage.googleapis.com/v1beta") == (
        "https://generativelanguage.googleapis.com", "v1beta")
    assert split_api_url("http://127.0.0.1:9/v1/") == ("http://127.0.0.1:9", "v1")
    assert split_api_url("http://127.0.0.1:9") == ("http://127.0.0.1:9", "v1beta")
    assert split_api_url(None) == (None, "v1beta")


async def test_success_speaks_the_real_wire_shape(gemini: tuple[FakeGemini, str],
                                                  http: httpx.AsyncClient) -> None:
    fake, url = gemini
    before = GEMINI_TOKENS.labels("prompt")._value.get()
    answer = await client_for(url, http).generate_structured(compare_parts(), VisualJudgement, "rerank")
    assert answer.value is not None and answer.value.same_item and answer.value.score > 0.9
    assert answer.usage.prompt == fake.requests[0].prompt_tokens > 258 * 2 and answer.usage.output > 0
    assert GEMINI_TOKENS.labels("prompt")._value.get() - before == answer.usage.prompt
    seen = fake.requests[0]
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen.api_key == API_KEY
    assert len(seen.images) == 2 and seen.images[0][:2] == b"\xff\xd8"
    assert seen.body["generationConfig"]["responseMimeType"] == "application/json"


async def test_429_then_success_through_retries(gemini: tuple[FakeGemini, str],
                                                    http: httpx.AsyncClient) -> None:
    fake, url = gemini
    fake.fail_next("429", "503")
    answer = await client_for(url, http).generate_structured(compare_parts(), VisualJudgement, "rerank")
    assert answer.value is not None
    assert fake.request_count == 3


async def test_500_exhausted_is_upstream_unavailable(gemini: tuple[FakeGemini, str],
                                                     http: httpx.AsyncClient) -> None:
    fake, url = gemini
    fake.fail_next("500", "500", "500", "500")
    with pytest.raises(UpstreamUnavailable, match="HTTP 500"):
        await client_for(url, http).generate_structured(compare_parts(), VisualJudgement, "rerank")
    assert fake.request_count == 3  # max_retries=2 → three attempts


async def test_timeout_is_upstream_timeout(gemini: tuple[FakeGemini, str],
                                           http: httpx.AsyncClient) -> None:
    fake, url = gemini
    fake.fail_next("slow", "slow", "slow")
    client = client_for(url, http, timeout_s=0.3, max_retries=1)
    with pytest.raises(UpstreamTimeout):
        await client.generate_structured(compare_parts(), VisualJudgement, "rerank")
    assert fake.request_count == 1  # no deadline known: a second full time-out is not risked
    with pytest.raises(UpstreamTimeout):
        await client.generate_structured(compare_parts(), VisualJudgement, "rerank", deadline=Deadline(5.0))
    assert fake.request_count == 3  # with time left before the deadline it is retried once


async def test_wrong_key_is_a_configuration_failure(gemini: tuple[FakeGemini, str],
                                                    http: httpx.AsyncClient) -> None:
    _, url = gemini
    with pytest.raises(UpstreamUnavailable, match="credentials rejected"):
        await client_for(url, http, api_key="wrong").generate_structured(
            compare_parts(), VisualJudgement, "rerank")


@pytest.mark.parametrize("fault", ["malformed", "schema", "empty"])
async def test_invalid_output_is_retried_once(gemini: tuple[FakeGemini, str], http: httpx.AsyncClient,
                                              fault: str) -> None:
    fake, url = gemini
    fake.fail_next(fault)
    answer = await client_for(url, http).generate_structured(compare_parts(), VisualJudgement, "rerank")
    assert answer.value is not None and fake.request_count == 2
    fake.fail_next(fault, fault)
    answer = await client_for(url, http).generate_structured(compare_parts(), VisualJudgement, "rerank")
    assert answer.value is None and answer.error is not None and "failed validation, 2 attempt(s)" in answer.error
    assert fake.request_count == 4


async def test_breaker_opens_after_consecutive_failures(gemini: tuple[FakeGemini, str],
                                                        http: httpx.AsyncClient) -> None:
    fake, url = gemini
    client = client_for(url, http, max_retries=0, breaker_failures=2, breaker_cooldown_s=60)
    fake.fail_next("500", "500")
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            await client.generate_structured(compare_parts(), VisualJudgement, "rerank")
    with pytest.raises(UpstreamUnavailable, match="circuit open"):
        await client.generate_structured(compare_parts(), VisualJudgement, "rerank")
    assert fake.request_count == 2  # the open breaker did not call Gemini


def _candidate(host: PhotoHost, sku: str, colour: str | tuple[int, int, int], score: float,
               **meta: object) -> RerankCandidate:
    flat = host.add(f"{sku}-flat.jpg", jpeg("white"))
    on_model = host.add(f"{sku}-model.jpg", jpeg(colour))
    metadata = {"image_kinds": ["flat", "on_model"], **meta}
    return RerankCandidate("brand", sku, score, (flat, on_model), metadata)


async def test_rerank_orders_by_visual_judgement(gemini: tuple[FakeGemini, str], http: httpx.AsyncClient,
                                                 photo_host: PhotoHost) -> None:
    fake, url = gemini
    candidates = [_candidate(photo_host, "blue", "blue", 0.9),
                  _candidate(photo_host, "red", (245, 5, 5), 0.6),
                  RerankCandidate("brand", "nophoto", 0.95, (), {"colour": "red"})]
    reranker = reranker_for(client_for(url, http), http, photo_host)
    ranked, usage = await reranker.rerank(jpeg("red"), candidates, {"color": "red"})
    # blue looks nothing like the crop (visual 0); no-photo scores 0.3 × semantic (colour red)
    assert [r.external_id for r in ranked] == ["red", "nophoto", "blue"]
    assert ranked[0].visual is not None and ranked[0].visual > 0.9
    assert ranked[1].visual is None and "ranked on semantics" in ranked[1].reason
    assert ranked[2].visual == 0.0
    assert usage.prompt == sum(seen.prompt_tokens for seen in fake.requests) and fake.request_count == 2
    # the on-model photo was compared, not the flat white one
    assert all(abs(sum(_mean(seen.images[1])) / 3 - 250) > 30 for seen in fake.requests)


def _mean(data: bytes) -> tuple[float, float, float]:
    from tests.fakes.gemini_server import mean_colour

    return mean_colour(data)


async def test_invalid_output_keeps_search_score_when_others_were_judged(
        gemini: tuple[FakeGemini, str], http: httpx.AsyncClient, photo_host: PhotoHost) -> None:
    fake, url = gemini
    fake.fail_next("malformed")
    reranker = reranker_for(client_for(url, http, concurrency=1), http, photo_host)
    candidates = [_candidate(photo_host, "x", "blue", 0.42), _candidate(photo_host, "y", "red", 0.41)]
    ranked, _ = await reranker.rerank(jpeg("red"), candidates, {}, RetryBudget(0))
    failed = [r for r in ranked if "failed validation" in r.reason]
    assert len(failed) == 1 and failed[0].visual == pytest.approx(failed[0].search_score)
    assert "search score" in failed[0].reason and fake.request_count == 2


async def test_malformed_answers_for_every_candidate_fail_the_rerank_and_feed_the_breaker(
        gemini: tuple[FakeGemini, str], http: httpx.AsyncClient, photo_host: PhotoHost) -> None:
    """Issue 18.12: invalid answers are failures — the rerank fails (the orchestrator then
    flags `rerank_unavailable`) and each one counts on the breaker."""
    fake, url = gemini
    fake.fail_next(*["malformed"] * 4)
    client = client_for(url, http, breaker_failures=4, breaker_cooldown_s=60)
    reranker = reranker_for(client, http, photo_host)
    candidates = [_candidate(photo_host, "a", "red", 0.5), _candidate(photo_host, "b", "red", 0.4)]
    with pytest.raises(UpstreamUnavailable, match="all 2 visual comparisons failed"):
        await reranker.rerank(jpeg("red"), candidates, {}, RetryBudget(2))
    assert fake.request_count == 4 and client.breaker.open


async def test_missing_photo_keeps_search_score(gemini: tuple[FakeGemini, str], http: httpx.AsyncClient,
                                                photo_host: PhotoHost) -> None:
    _, url = gemini
    gone = RerankCandidate("brand", "gone", 0.33, (f"{photo_host.base_url}/img/missing.jpg",), {})
    reranker = reranker_for(client_for(url, http), http, photo_host)
    ranked, _ = await reranker.rerank(jpeg("red"), [gone], {})
    assert ranked[0].visual == pytest.approx(0.33) and "catalog photo unusable" in ranked[0].reason


async def test_gemini_down_for_every_candidate_raises(gemini: tuple[FakeGemini, str],
                                                      http: httpx.AsyncClient,
                                                      photo_host: PhotoHost) -> None:
    fake, url = gemini
    fake.fail_next(*["500"] * 4)
    reranker = reranker_for(client_for(url, http, max_retries=1), http, photo_host)
    candidates = [_candidate(photo_host, "a", "red", 0.5), _candidate(photo_host, "b", "red", 0.4)]
    with pytest.raises(UpstreamUnavailable, match="all 2 visual comparisons failed"):
        await reranker.rerank(jpeg("red"), candidates, {})


async def test_twenty_candidates_run_concurrently_within_the_limit(
        http: httpx.AsyncClient, photo_host: PhotoHost) -> None:
    from tests.fakes.gemini_server import fake_gemini

    with fake_gemini(latency_s=0.3) as (fake, url):
        reranker = reranker_for(client_for(url, http, concurrency=5), http, photo_host)
        candidates = [_candidate(photo_host, f"s{i}", (10 * i, 50, 100), 0.5) for i in range(20)]
        ranked, _ = await reranker.rerank(jpeg((100, 50, 100)), candidates, {})
    assert len(ranked) == 20 and fake.request_count == 20
    assert fake.max_in_flight == 5  # bounded by GEMINI_CONCURRENCY, and it used all of it
    assert ranked[0].external_id == "s10"  # the fake's colour judgement: (100, 50, 100) is s10


async def test_tag_through_gemini(gemini: tuple[FakeGemini, str], http: httpx.AsyncClient,
                                  photo_host: PhotoHost) -> None:
    _, url = gemini
    reranker = reranker_for(client_for(url, http), http, photo_host)
    tags, usage = await reranker.tag(jpeg((20, 20, 30)))
    assert tags.season == "autumn-winter" and tags.style == "casual"
    assert tags.brand_style is None and tags.unknown == ["brand_style"]
    assert usage.prompt > 0


async def test_tag_invalid_twice_is_an_upstream_error(gemini: tuple[FakeGemini, str],
                                                      http: httpx.AsyncClient,
                                                      photo_host: PhotoHost) -> None:
    fake, url = gemini
    fake.fail_next("schema", "schema")
    reranker = reranker_for(client_for(url, http), http, photo_host)
    with pytest.raises(UpstreamError, match="failed validation, 2 attempt"):
        await reranker.tag(jpeg("red"))
