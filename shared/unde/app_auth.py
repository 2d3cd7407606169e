"""The orchestrator's public edge: the app's API key (rate limits: `unde.rate_limit`).

Keys come from `APP_API_KEYS` (a Secret; comma-separated, so keys can be rotated by adding the
new one before removing the old). The app sends `Authorization: Bearer <key>` or `X-API-Key`;
the QA console's browser sends the `KEY_COOKIE` its sign-in form set (HttpOnly, SameSite=Strict:
never sent cross-site; see `unde.console`).
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from unde.errors import Unauthorized

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
