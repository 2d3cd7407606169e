from __future__ import annotations

import pytest
from starlette.requests import Request

from unde.app_auth import AppKeys, PerUserLimiter
from unde.errors import RateLimited, Unauthorized


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/recognize", "headers": raw})


def test_keys_disabled_admit_everyone() -> None:
    assert AppKeys.parse("").check(_request({})) is None


@pytest.mark.parametrize("headers", [{"authorization": "Bearer k2"}, {"x-api-key": "k1"}])
def test_a_valid_key_in_either_header(headers: dict[str, str]) -> None:
    assert AppKeys.parse("k1, k2").check(_request(headers)) in {"k1", "k2"}


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer nope"}, {"x-api-key": ""},
                                     {"authorization": "Basic k1"}])
def test_missing_or_wrong_keys_are_401(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized):
        AppKeys.parse("k1,k2").check(_request(headers))


def test_per_user_bucket_refills_and_isolates_users() -> None:
    now = [0.0]
    limiter = PerUserLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.allow("b")  # another shopper is not affected
    now[0] += 1.0  # one second = one token at 60/min
    assert limiter.allow("a") and not limiter.allow("a")
    with pytest.raises(RateLimited):
        limiter.check("a")


def test_limiter_memory_is_bounded() -> None:
    limiter = PerUserLimiter(per_minute=60, burst=1, max_users=3, clock=lambda: 0.0)
    for user in "abcde":
        limiter.allow(user)
    assert len(limiter._buckets) == 3
    assert limiter.allow("a")  # evicted, so it starts with a full bucket again
