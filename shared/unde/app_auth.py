"""The orchestrator's public edge: the app's API key (rate limits: `unde.rate_limit`).

Keys come from `APP_API_KEYS` (a Secret; comma-separated, so keys can be rotated by adding the
new one before removing the old). The app sends `Authorization: Bearer <key>` or `X-API-Key`.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from unde.errors import Unauthorized


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
        return request.headers.get("x-api-key", "").strip()

    def check(self, request: Request) -> str | None:
        """The key the request presented, if valid; Unauthorized otherwise (None when disabled)."""
        if not self.enabled:
            return None
        offered = self.presented(request).encode()
        # Compare against every key so the time taken does not reveal which one was close.
        valid = [hmac.compare_digest(offered, key) for key in self._keys]
        if not offered or not any(valid):
            raise Unauthorized("missing or invalid API key")
        return offered.decode()
