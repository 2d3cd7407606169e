"""The orchestrator's public edge: the app's API key, and a per-user request rate limit.

Keys come from `APP_API_KEYS` (a Secret; comma-separated, so keys can be rotated by adding the
new one before removing the old). The app sends `Authorization: Bearer <key>` or `X-API-Key`;
the QA console's browser sends the `KEY_COOKIE` its sign-in form set (HttpOnly, SameSite=Strict:
never sent cross-site; see `unde.console`).
The rate limit is a token bucket per user (user id, else API key, else client address),
kept per process: with N pods the cluster-wide limit is N times it, which is documented.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import Request

from unde.errors import RateLimited, Unauthorized

KEY_COOKIE = "unde_app_key"


class AppKeys:
    """The API keys the mobile app may present."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [key.encode() for key in keys if key]

    @classmethod
    def parse(cls, raw: str | None) -> AppKeys:
        return cls([part.strip() for part in (raw or "").split(",") if part.strip()])

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def presented(self, request: Request) -> str:
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return authorization[7:].strip()
        return request.headers.get("x-api-key", "").strip() or request.cookies.get(KEY_COOKIE, "").strip()

    def valid(self, offered: str) -> bool:
        """True when `offered` is one of the keys."""
        encoded = offered.encode()
        # Compare against every key so the time taken does not reveal which one was close.
        matches = [hmac.compare_digest(encoded, key) for key in self._keys]
        return bool(encoded) and any(matches)

    def check(self, request: Request) -> str | None:
        """The key the request presented, if valid; Unauthorized otherwise (None when disabled)."""
        if not self.enabled:
            return None
        offered = self.presented(request)
        if not self.valid(offered):
            raise Unauthorized("missing or invalid API key")
        return offered


class PerUserLimiter:
    """Token bucket per user: `per_minute` sustained, `burst` at once; least-recent users evicted."""

    def __init__(self, per_minute: float, burst: int, *, max_users: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = per_minute / 60.0
        self.burst = float(burst)
        self.max_users = max_users
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, user: str) -> bool:
        """Take one request from `user`'s bucket; False when it is empty."""
        now = self._clock()
        tokens, updated = self._buckets.pop(user, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate_per_s)
        allowed = tokens >= 1.0
        self._buckets[user] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.max_users:
            self._buckets.popitem(last=False)
        return allowed

    def check(self, user: str) -> None:
        if not self.allow(user):
            raise RateLimited(f"too many requests for {user!r}; slow down")
