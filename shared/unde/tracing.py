"""Request identity that follows one recognition across functions.

The orchestrator mints a request id and a W3C ``traceparent``; every outbound call carries
both headers, every function adopts them, and every log line includes the request id.
"""

from __future__ import annotations

import re
import secrets
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

REQUEST_ID_HEADER: Final = "x-request-id"
TRACEPARENT_HEADER: Final = "traceparent"

_TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The identity of the request being served."""

    request_id: str
    trace_id: str
    span_id: str

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"

    def child(self) -> TraceContext:
        """The context an outbound call carries: same trace, new span."""
        return TraceContext(self.request_id, self.trace_id, secrets.token_hex(8))

    def headers(self) -> dict[str, str]:
        """Headers for an outbound call made on behalf of this request."""
        child = self.child()
        return {REQUEST_ID_HEADER: self.request_id, TRACEPARENT_HEADER: child.traceparent}


_current: ContextVar[TraceContext | None] = ContextVar("unde_trace", default=None)


def new_context(request_id: str | None = None) -> TraceContext:
    """A fresh trace (the orchestrator starts one per recognition)."""
    return TraceContext(request_id or str(uuid.uuid4()), secrets.token_hex(16), secrets.token_hex(8))


def context_from_headers(headers: dict[str, str] | object) -> TraceContext:
    """Adopt the caller's request id and trace, or start new ones when absent or malformed."""
    get = getattr(headers, "get", None)
    raw_id = get(REQUEST_ID_HEADER) if get else None
    raw_tp = get(TRACEPARENT_HEADER) if get else None
    request_id = raw_id if isinstance(raw_id, str) and _REQUEST_ID_RE.match(raw_id) else None
    match = _TRACEPARENT_RE.match(raw_tp) if isinstance(raw_tp, str) else None
    if match:
        return TraceContext(request_id or str(uuid.uuid4()), match.group(1), secrets.token_hex(8))
    return new_context(request_id)


def set_current(context: TraceContext) -> None:
    _current.set(context)


def current() -> TraceContext | None:
    """The trace of the request this task serves, if any."""
    return _current.get()


def adopt_uuid_request_id() -> str:
    """Make the current request id a UUID (the log row's key), deriving one from a non-UUID id.

    The app may send any `x-request-id`; a non-UUID one is mapped deterministically (uuid5) so
    retries of the same id still land on the same row.
    """
    context = _current.get() or new_context()
    try:
        request_id = str(uuid.UUID(context.request_id))
    except ValueError:
        request_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"unde-request:{context.request_id}"))
    _current.set(TraceContext(request_id, context.trace_id, context.span_id))
    return request_id


def outbound_headers() -> dict[str, str]:
    """Headers to add to a call to another function (empty outside a request)."""
    context = _current.get()
    return context.headers() if context else {}
