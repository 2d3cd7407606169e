"""One exception tree for the project, and its mapping to HTTP status codes.

Lower-level errors (httpx, psycopg, PIL, google-genai) are translated once, at the boundary
where they are caught, with ``raise ... from exc``.

    UndeError
    ├── ConfigError            bad settings: start-up fails
    ├── BadInput               the caller sent something wrong → 400/413/415/422
    │   └── NotAllowed         a URL the service refuses to fetch (SSRF guard) → 422
    ├── Unauthorized           missing/wrong credentials → 401
    ├── RateLimited            the caller exceeded its quota → 429
    ├── NotFound               → 404
    ├── MethodNotAllowed       → 405
    ├── UpstreamError          a service we call failed → 502
    │   ├── UpstreamRejected   it answered 4xx: our request was bad (its status kept)
    │   ├── UpstreamTimeout    it did not answer in time → 504
    │   └── UpstreamUnavailable  known to be down (circuit open, not configured) → 503
    └── StoreError             a database failed → 503
"""

from __future__ import annotations


class UndeError(Exception):
    """Base of every error this project raises on purpose."""

    status_code = 500
    code = "internal"

    def to_json(self) -> dict[str, object]:
        """The JSON body an HTTP function answers with for this error."""
        return {"error": self.code, "message": str(self)}


class ConfigError(UndeError):
    """A setting has a bad value; the function must not start."""

    code = "config"


class BadInput(UndeError):
    """The request is wrong. `field` names what is wrong, `status_code` says how."""

    status_code = 422
    code = "bad_input"

    def __init__(self, message: str, *, field: str | None = None, status_code: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status_code = status_code

    def to_json(self) -> dict[str, object]:
        body = super().to_json()
        if self.field is not None:
            body["field"] = self.field
        return body


class NotAllowed(BadInput):
    """A URL points somewhere this service will not fetch from."""

    code = "url_not_allowed"


class Unauthorized(UndeError):
    status_code = 401
    code = "unauthorized"


class RateLimited(UndeError):
    status_code = 429
    code = "rate_limited"


class NotFound(UndeError):
    status_code = 404
    code = "not_found"


class UpstreamError(UndeError):
    """A service we depend on failed. `service` names it; `retryable` says if trying again helps."""

    status_code = 502
    code = "upstream_error"

    def __init__(self, service: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.retryable = retryable

    def to_json(self) -> dict[str, object]:
        body = super().to_json()
        body["service"] = self.service
        return body


class UpstreamRejected(UpstreamError):
    """Another of our functions refused the request as bad input (its 4xx, passed on)."""

    def __init__(self, service: str, message: str, *, upstream_status: int,
                 field: str | None = None) -> None:
        super().__init__(service, message)
        self.upstream_status = upstream_status
        self.field = field
        self.detail = message


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"

    def __init__(self, service: str, message: str = "timed out") -> None:
        super().__init__(service, message, retryable=True)


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    code = "upstream_unavailable"


class StoreError(UndeError):
    """A database call failed (connection, timeout, constraint we did not expect)."""

    status_code = 503
    code = "store_error"


class MethodNotAllowed(UndeError):
    status_code = 405
    code = "method_not_allowed"


class ProviderMisconfigured(UpstreamUnavailable):
    """A provider refused our credentials (HTTP 401/403): a setting is wrong, retrying won't help."""

    code = "provider_misconfigured"
