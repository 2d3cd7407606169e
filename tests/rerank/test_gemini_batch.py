"""Issue 20: batched compares (RERANK_BATCH) on the fake Gemini, their validation and fallbacks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fakes.gemini_server import FakeGemini
from tests.rerank.conftest import PhotoHost, jpeg
from tests.rerank.test_gemini import _candidate, client_for, reranker_for
from unde.errors import UpstreamUnavailable
from unde.providers.gemini_policy import RetryBudget
from unde.rerank.candidates import RerankCandidate
from unde.rerank.gemini_rerank import IndexedJudgement, batch_problem


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _twenty(host: PhotoHost) -> list[RerankCandidate]:
    return [_candidate(host, f"s{i}", (10 * i, 50, 100), 0.5 + i / 100) for i in range(20)]


async def test_batch_of_ten_makes_two_calls_and_ranks_like_pairwise(
        gemini: tuple[FakeGemini, str], http: httpx.AsyncClient, photo_host: PhotoHost) -> None:
    fake, url = gemini
    candidates = _twenty(photo_host)
    crop = jpeg((100, 50, 100))
    pairwise, pair_usage = await reranker_for(client_for(url, http), http, photo_host).rerank(crop, candidates, {})
    pair_calls, pair_images = fake.request_count, sum(len(s.images) for s in fake.requests)
    fake.reset_counters()
    batched, usage = await reranker_for(client_for(url, http), http, photo_host, batch=10).rerank(
        crop, candidates, {})
    assert (pair_calls, pair_images) == (20, 40)
    assert fake.request_count == 2 and [len(s.images) for s in fake.requests] == [11, 11]
    assert [r.sku_id for r in batched] == [r.sku_id for r in pairwise]
    assert [r.visual for r in batched] == pytest.approx([r.visual for r in pairwise])
    assert batched[0].external_id == "s10" and "gemini: same item" in batched[0].reason
    assert usage.prompt < pair_usage.prompt / 1.5
    # the wire: an ARRAY schema of objects with index/same_item/score/reason, numbered labels
    config = fake.requests[0].body["generationConfig"]
    schema = config.get("responseSchema") or config.get("responseJsonSchema")
    assert str(schema["type"]).upper() == "ARRAY"
    assert {"index", "same_item", "score", "reason"} <= set(schema["items"]["properties"])
    assert fake.requests[0].labels == [None, *range(1, 11)]


def test_batch_problems() -> None:
    def verdict(index: int) -> IndexedJudgement:
        return IndexedJudgement(index=index, same_item=False, score=0.1, reason="r")

    assert batch_problem([verdict(1), verdict(2)], 2) is None
    assert batch_problem([verdict(2)], 2) is None  # a missing one is not a bad answer
    assert "twice" in (batch_problem([verdict(1), verdict(1)], 2) or "")
    assert "not a candidate" in (batch_problem([verdict(3)], 2) or "")
    assert "not a candidate" in (batch_problem([verdict(0)], 2) or "")


@pytest.mark.parametrize("fault", ["duplicate", "schema", "malformed"])
async def test_unusable_batch_answer_falls_back_to_single_compares(
        gemini: tuple[FakeGemini, str], http: httpx.AsyncClient, photo_host: PhotoHost, fault: str) -> None:
    fake, url = gemini
    fake.fail_next(fault)
    candidates = _twenty(photo_host)[:4]
    ranked, _ = await reranker_for(client_for(url, http), http, photo_host, batch=4).rerank(
        jpeg((30, 50, 100)), candidates, {})
    assert fake.request_count == 1 + 4  # the batch, then the probe, then the other three
    assert [len(s.images) for s in fake.requests] == [5, 2, 2, 2, 2]
    assert all("gemini: " in r.reason for r in ranked)
    assert ranked[0].external_id == "s3"


async def test_broken_batch_and_probe_asks_no_more(gemini: tuple[FakeGemini, str], http: httpx.AsyncClient,
                                                   photo_host: PhotoHost) -> None:
    fake, url = gemini
    fake.fail_next("malformed", "malformed", "malformed")
    candidates = _twenty(photo_host)[:6]
    reranker = reranker_for(client_for(url, http), http, photo_host, batch=6)
    with pytest.raises(UpstreamUnavailable, match="all 6 visual comparisons failed"):
        await reranker.rerank(jpeg("red"), candidates, {}, RetryBudget(1))
    assert fake.request_count == 3  # batch + probe + the probe's one validation retry; not 6 singles


async def test_candidate_missing_from_a_valid_answer_keeps_its_search_score(
        gemini: tuple[FakeGemini, str], http: httpx.AsyncClient, photo_host: PhotoHost) -> None:
    fake, url = gemini
    fake.fail_next("missing")
    candidates = _twenty(photo_host)[:3]
    ranked, _ = await reranker_for(client_for(url, http), http, photo_host, batch=3).rerank(
        jpeg((0, 50, 100)), candidates, {})
    assert fake.request_count == 1
    by_id = {r.external_id: r for r in ranked}
    assert "gave no verdict" in by_id["s2"].reason and by_id["s2"].visual == pytest.approx(0.52)
    assert by_id["s0"].visual is not None and by_id["s0"].visual > 0.95


async def test_batches_and_singles_share_the_concurrency_limit(http: httpx.AsyncClient,
                                                               photo_host: PhotoHost) -> None:
    from tests.fakes.gemini_server import fake_gemini

    with fake_gemini(latency_s=0.2) as (fake, url):
        reranker = reranker_for(client_for(url, http, concurrency=2), http, photo_host, batch=4)
        candidates = _twenty(photo_host)
        ranked, _ = await reranker.rerank(jpeg((100, 50, 100)), candidates, {})
    assert fake.request_count == 5 and fake.max_in_flight == 2 and len(ranked) == 20
