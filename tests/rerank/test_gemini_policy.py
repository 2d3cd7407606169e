"""Issue 18.11: against a failing Gemini the breaker and the recognition's retry budget apply to
every attempt (the SDK's own retries are off), so a request makes a small, known number of calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fakes.gemini_server import FakeGemini
from tests.rerank.conftest import PhotoHost, jpeg
from tests.rerank.test_gemini import _candidate, client_for, compare_parts, reranker_for
from unde.errors import UpstreamTimeout, UpstreamUnavailable
from unde.providers.gemini_policy import CircuitBreaker, CircuitOpen, RetryBudget, RetryBudgets
from unde.rerank.gemini_rerank import VisualJudgement
from unde.service_client import Deadline


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_the_sdk_makes_one_attempt_per_call(gemini: tuple[FakeGemini, str], http: httpx.AsyncClient) -> None:
    fake, url = gemini
    fake.fail_next("500", "500", "500")
    with pytest.raises(UpstreamUnavailable, match="HTTP 500"):
        await client_for(url, http, max_retries=0).generate_structured(compare_parts(), VisualJudgement, "rerank")
    assert fake.request_count == 1  # the SDK's HttpRetryOptions would have made more


async def test_breaker_is_fed_and_checked_per_attempt(gemini: tuple[FakeGemini, str],
                                                      http: httpx.AsyncClient) -> None:
    fake, url = gemini
    fake.fail_next(*["500"] * 10)
    client = client_for(url, http, max_retries=5, breaker_failures=2, breaker_cooldown_s=60)
    with pytest.raises(UpstreamUnavailable):
        await client.generate_structured(compare_parts(), VisualJudgement, "rerank", RetryBudget(10))
    assert fake.request_count == 2  # two failed attempts opened it; the third retry never went out
    assert client.breaker.open


async def test_retry_budget_is_shared_by_the_calls_of_one_recognition(
        gemini: tuple[FakeGemini, str], http: httpx.AsyncClient) -> None:
    fake, url = gemini
    fake.fail_next(*["429"] * 20)
    client = client_for(url, http, max_retries=2, breaker_failures=100)
    budget = RetryBudget(1)
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable, match="HTTP 429"):
            await client.generate_structured(compare_parts(), VisualJudgement, "rerank", budget)
    assert fake.request_count == 3 + 1 and budget.attempts == 4 and budget.retried == 1


def test_budgets_are_found_by_request_id() -> None:
    budgets = RetryBudgets(2)
    assert budgets.for_request("r1") is budgets.for_request("r1")
    assert budgets.for_request("r1") is not budgets.for_request("r2")
    assert budgets.for_request(None) is not budgets.for_request(None)


async def test_retries_stop_at_the_deadline(gemini: tuple[FakeGemini, str], http: httpx.AsyncClient) -> None:
    fake, url = gemini
    fake.fail_next(*["slow"] * 5)
    client = client_for(url, http, timeout_s=2.0, max_retries=4, breaker_failures=100)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await client.generate_structured(compare_parts(), VisualJudgement, "rerank", RetryBudget(10),
                                         Deadline(0.6))
    assert time.monotonic() - started < 1.5  # each attempt's time-out was cut to what was left
    assert fake.request_count <= 2


async def test_half_open_breaker_lets_one_probe_through(gemini: tuple[FakeGemini, str],
                                                        http: httpx.AsyncClient) -> None:
    fake, url = gemini
    client = client_for(url, http, max_retries=0, breaker_failures=1, breaker_cooldown_s=0.2)
    fake.fail_next("500")
    with pytest.raises(UpstreamUnavailable):
        await client.generate_structured(compare_parts(), VisualJudgement, "rerank")
    await asyncio.sleep(0.25)
    fake.fail_next("slow")  # the probe is slow; everybody else must be refused meanwhile
    fake.slow_s = 0.3
    outcomes = await asyncio.gather(*(client.generate_structured(compare_parts(), VisualJudgement, "rerank")
                                      for _ in range(5)), return_exceptions=True)
    assert fake.request_count == 2
    assert sum(isinstance(o, CircuitOpen) for o in outcomes) == 4
    assert not client.breaker.open  # the probe's success closed it


def test_probe_failure_reopens() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=0.0)
    for _ in range(3):
        breaker.failure()
    breaker.admit()  # cool-down 0: half-open, this is the probe
    with pytest.raises(CircuitOpen):
        breaker.admit()  # a second attempt while the probe is out
    breaker.failure()
    breaker.cooldown_s = 60
    assert breaker.open


async def test_failing_gemini_costs_a_small_known_number_of_calls(
        gemini: tuple[FakeGemini, str], http: httpx.AsyncClient, photo_host: PhotoHost) -> None:
    """One garment's /tag and /rerank of 20 candidates (RERANK_BATCH 10) against a Gemini that
    answers 429 to everything: first attempts (1 tag + 2 batches) + the recognition's 3 retries
    at most — the old client made 3 × (1 + 20) calls."""
    fake, url = gemini
    fake.fail_next(*["429"] * 1000)
    client = client_for(url, http, max_retries=2, breaker_failures=5)
    reranker = reranker_for(client, http, photo_host, batch=10)
    budget = RetryBudget(3)
    with pytest.raises(UpstreamUnavailable):
        await reranker.tag(jpeg("red"), budget)
    candidates = [_candidate(photo_host, f"c{i}", (10 * i, 40, 90), 0.5) for i in range(20)]
    with pytest.raises(UpstreamUnavailable):
        await reranker.rerank(jpeg("red"), candidates, {}, budget)
    assert fake.request_count <= 1 + 2 + 3
    assert budget.attempts == fake.request_count
