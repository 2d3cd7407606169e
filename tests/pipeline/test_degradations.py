"""Issue 18 items 10, 13, 15: tiers without a rerank score, the re-query in the log row and its
limits, and which errors the pipeline may swallow."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.fakes.pipeline_upstreams import FakeItem, FakeUpstreams
from tests.pipeline.test_recognize import IN_STOCK, one, run
from unde.budget import BudgetSpent, Deadline
from unde.db.pool import budgeted
from unde.pipeline import item as item_module
from unde.pipeline.item import DB_WAIT_S

#: Search cosines sit high for anything (0.85–0.97): a loafer the catalog does not have.
NOT_IN_CATALOG = [("zara", "z1", 0.94), ("mango", "m1", 0.91), ("mango", "m2", 0.88)]


async def test_reranker_down_and_search_not_confident_is_never_exact(staging: AsyncConnectionPool) -> None:
    fake = one(FakeItem("shoes", NOT_IN_CATALOG, confident=False, type="loafers"))
    fake.fail = {"reranker /rerank"}
    response, record = await run(fake, staging)
    [item] = response["items"]
    assert item["match_type"] == "similar"  # 0.94 > CONFIDENCE_HIGH, but the gate was not confident
    assert item["tier_basis"] == "search"
    assert "tier_from_search_score" in item["degraded"] and "tier_from_search_score" in record["degradations"]
    assert record["final_matches"][0]["tier_basis"] == "search"
    assert record["search_results"][0]["tier_basis"] == "search"


async def test_reranker_down_keeps_exact_only_when_search_was_confident(staging: AsyncConnectionPool) -> None:
    fake = one(FakeItem("outerwear", IN_STOCK, confident=True))
    fake.fail = {"reranker /rerank"}
    response, _ = await run(fake, staging)
    assert response["items"][0]["match_type"] == "exact"
    low = one(FakeItem("outerwear", [("zara", "z1", 0.45), ("mango", "m1", 0.4), ("mango", "m2", 0.3)],
                       confident=False, type="bomber_jacket"))
    low.fail = {"reranker /rerank"}
    response, _ = await run(low, staging)
    assert response["items"][0]["match_type"] == "style"  # below CONFIDENCE_MEDIUM


async def test_with_a_rerank_score_the_tier_says_so(staging: AsyncConnectionPool) -> None:
    fake = one(FakeItem("outerwear", IN_STOCK, confident=False), zara_z1=0.91)
    response, _ = await run(fake, staging)
    [item] = response["items"]
    assert item["match_type"] == "exact" and item["tier_basis"] == "rerank"
    assert "tier_from_search_score" not in response["degraded"]


async def test_the_requerys_ximilar_search_is_in_the_log_row(staging: AsyncConnectionPool) -> None:
    found = FakeItem("outerwear", [("zara", "z1", 0.95), ("zara", "z2", 0.90)], confident=True,
                     requery=[("mango", "m1", 0.7), ("mango", "m2", 0.6)])
    response, record = await run(one(found), staging)
    assert response["items"][0]["search"]["requeried_ximilar"] is True
    assert record["used_ximilar_booster"] is True
    assert record["ximilar_top1_score"] == 0.7
    assert record["search_results"][0]["requery_used_ximilar"] is True
    assert record["ximilar_credits"] == response["credits"] == 5 + 10  # detect + the re-query's search


async def test_no_requery_when_the_search_itself_failed(staging: AsyncConnectionPool) -> None:
    """SEARCH_BACKEND=ximilar with Ximilar failing: the gateway's /search fails; repeating it
    with force_ximilar would fail again (12 attempts for 2 garments in the attack run)."""
    fake = FakeUpstreams([FakeItem("outerwear", IN_STOCK), FakeItem("bottom", IN_STOCK)])
    fake.fail = {"gateway /search"}
    response, _ = await run(fake, staging)
    assert fake.calls["gateway /search"] == 2
    assert all("search_unavailable" in i["degraded"] for i in response["items"])


@pytest.mark.parametrize("reported", ["ximilar_search_failed", "ximilar_search_timeout"])
async def test_no_requery_when_the_search_reported_ximilar_failing(staging: AsyncConnectionPool,
                                                                   reported: str) -> None:
    found = FakeItem("outerwear", [("zara", "z1", 0.95)], confident=False, search_degraded=[reported],
                     requery=[("mango", "m1", 0.7)])
    found_fake = one(found)
    # The fake marks a not-confident search as having used Ximilar; here Ximilar failed instead.
    original = found_fake._gateway_search

    def failed_ximilar(body: dict[str, Any]) -> httpx.Response:
        answer = json.loads(original(body).content)
        answer["used_ximilar"] = False
        return httpx.Response(200, json=answer)

    found_fake._gateway_search = failed_ximilar  # type: ignore[method-assign,assignment]
    response, _ = await run(found_fake, staging)
    assert found_fake.calls["gateway /search"] == 1
    assert reported in response["items"][0]["degraded"]


async def test_a_bug_in_a_database_step_propagates(staging: AsyncConnectionPool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object, **kwargs: object) -> object:
        raise TypeError("a bug, not an outage")

    monkeypatch.setattr(item_module, "stock_in_mall", broken)
    with pytest.raises(TypeError, match="a bug"):
        await run(one(FakeItem("outerwear", IN_STOCK, confident=True)), staging)


async def test_a_database_outage_still_degrades(staging: AsyncConnectionPool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    async def down(*args: object, **kwargs: object) -> object:
        raise psycopg.OperationalError("server closed the connection")

    monkeypatch.setattr(item_module, "attribute_fallback", down)
    fake = one(FakeItem("outerwear", IN_STOCK, confident=False, type="bomber_jacket"),
               zara_z1=0.3, mango_m1=0.2, mango_m2=0.1)
    response, _ = await run(fake, staging)
    assert "fallback_unavailable" in response["items"][0]["degraded"]


async def test_database_steps_wait_and_run_within_the_budget(staging: AsyncConnectionPool) -> None:
    """Issue 18, item 9: the statement timeout comes from the budget, not the pool's fixed one."""
    with pytest.raises(psycopg.errors.QueryCanceled):
        async with budgeted(staging, Deadline(0.3), DB_WAIT_S) as conn:
            await conn.execute("SELECT pg_sleep(3)")
    async with staging.connection() as conn:  # the pool's own timeout is back afterwards
        assert (await (await conn.execute("SHOW statement_timeout")).fetchone()) == ("5s",)
    with pytest.raises(BudgetSpent):
        async with budgeted(staging, Deadline(0.0), DB_WAIT_S):
            pass
