"""The request's budget crosses hops: sent as a header, adopted by every function's routes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from unde import budget
from unde.budget import BUDGET_HEADER, BudgetSpent, Deadline
from unde.runtime import function_router
from unde.service_client import ServiceClient


async def _no_health() -> Mapping[str, Any]:
    return {}


async def _remaining(request: Request) -> Mapping[str, Any]:
    return {"remaining_s": budget.current().remaining()}


def _app() -> Any:
    return function_router("t", {"POST /left": _remaining}, _no_health)


def _scope(headers: dict[str, str]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/left", "query_string": b"",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}


async def _left(headers: dict[str, str]) -> float:
    router = _app()
    response = await router(Request(_scope(headers)))
    return float(json.loads(bytes(response.body))["remaining_s"])


async def test_a_route_adopts_the_callers_budget() -> None:
    assert 1.0 < await _left({BUDGET_HEADER: "1500"}) <= 1.5 - budget.ANSWER_MARGIN_S
    assert await _left({BUDGET_HEADER: "0"}) == 0.0


@pytest.mark.parametrize("raw", ["", "-5", "abc", "1e9", "99999999999999"])
async def test_a_missing_or_bad_header_means_the_functions_own_ceiling(raw: str) -> None:
    headers = {BUDGET_HEADER: raw} if raw else {}
    left = await _left(headers)
    assert budget.DEFAULT_BUDGET_S - 1 < left <= budget.DEFAULT_BUDGET_S


async def test_calls_carry_their_timeout_as_the_callees_budget() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ServiceClient("up", "http://up.test", http, caller="t", default_timeout_s=10.0)
        await client.post("/a", {}, deadline=Deadline(2.0), timeout_s=5.0)
        await client.post("/b", {}, timeout_s=0.8)  # no deadline passed: the request's budget
        budget.set_current(Deadline(0.3))
        await client.post("/c", {}, timeout_s=5.0)
        budget.set_current(Deadline(0.0))
        with pytest.raises(BudgetSpent):
            await client.post("/d", {})
    sent = [int(r.headers[BUDGET_HEADER]) for r in seen]
    assert 1900 <= sent[0] <= 2000
    assert sent[1] == 800
    assert 200 <= sent[2] <= 300
    assert len(seen) == 3  # nothing is sent once the budget is spent


def test_deadline_reserve_and_within() -> None:
    deadline = Deadline(10.0)
    assert 7.9 < deadline.reserve(2.0).remaining() <= 8.0
    assert 0.9 < deadline.within(1.0).remaining() <= 1.0
    assert 9.9 < deadline.within(60.0).remaining() <= 10.0
    assert deadline.allows(5.0) and not deadline.allows(10.0)
