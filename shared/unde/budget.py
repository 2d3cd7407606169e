"""The request's time budget, carried across hops like the request id.

The orchestrator gives a recognition one budget (REQUEST_SOFT_DEADLINE_S). Every internal call
sends what the caller will still wait for — the call's own timeout — in `x-unde-budget-ms`;
the callee adopts it (`adopting`, wrapped around every route by `runtime.function_router`) as
the `Deadline` of the request it serves, minus a margin for its answer to travel back. Every
timeout, pool wait, statement timeout and retry decision inside the function is then derived
from `current()`, so no function keeps working on a request its caller has given up on.

A missing or malformed header means no caller budget: the function's own ceiling applies.
The header can only shorten work, never lengthen it past that ceiling.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, Final, TypeVar

from unde.errors import UpstreamTimeout

BUDGET_HEADER: Final = "x-unde-budget-ms"
#: Budget of a request that arrives without a caller budget (tests, the CLI, direct calls).
DEFAULT_BUDGET_S: Final = 30.0
#: Kept back from an adopted budget so the answer reaches the caller before its timeout.
ANSWER_MARGIN_S: Final = 0.05
#: Smallest budget an upstream attempt is started with; with less left, do not start it.
MIN_ATTEMPT_S: Final = 0.05


class BudgetSpent(UpstreamTimeout):
    """Nothing is left of the request's budget: the call is not made (no upstream's fault)."""

    def __init__(self, what: str = "the call") -> None:
        super().__init__("deadline", f"no time left in the request's budget for {what}")


class Deadline:
    """A point in time a request must be answered by; hands out per-call timeouts."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    @classmethod
    def at_monotonic(cls, at: float) -> Deadline:
        deadline = cls(0.0)
        deadline.at = at
        return deadline

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def timeout(self, cap: float | None = None) -> float:
        """Seconds a call may take: what is left, capped; raises when nothing is left."""
        left = self.remaining()
        if left <= 0.001:
            raise BudgetSpent()
        return min(left, cap) if cap is not None else left

    def within(self, seconds: float) -> Deadline:
        """A deadline `seconds` from now, never later than this one."""
        return Deadline.at_monotonic(min(self.at, time.monotonic() + seconds))

    def reserve(self, seconds: float) -> Deadline:
        """This deadline brought forward by `seconds` (time kept back for a fallback)."""
        return Deadline.at_monotonic(self.at - seconds)

    def allows(self, seconds: float) -> bool:
        """True when `seconds` of waiting still leave time for one more attempt."""
        return self.remaining() - seconds >= MIN_ATTEMPT_S

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.001


_current: ContextVar[Deadline | None] = ContextVar("unde_budget", default=None)


def from_headers(headers: Mapping[str, str] | Any, ceiling_s: float = DEFAULT_BUDGET_S) -> Deadline:
    """The deadline a request carries (`x-unde-budget-ms`), never past `ceiling_s` from now."""
    raw = headers.get(BUDGET_HEADER) if hasattr(headers, "get") else None
    seconds = ceiling_s
    if isinstance(raw, str) and raw.isdigit() and len(raw) <= 9:
        seconds = min(ceiling_s, max(0.0, int(raw) / 1000 - ANSWER_MARGIN_S))
    return Deadline(seconds)


def current() -> Deadline:
    """The budget of the request this task serves (the default budget outside a request)."""
    deadline = _current.get()
    return deadline if deadline is not None else Deadline(DEFAULT_BUDGET_S)


def set_current(deadline: Deadline) -> None:
    _current.set(deadline)


def headers_for(timeout_s: float) -> dict[str, str]:
    """The header an outbound call whose caller waits `timeout_s` carries."""
    return {BUDGET_HEADER: str(max(0, int(timeout_s * 1000)))}


R = TypeVar("R")


def adopting(endpoint: Callable[[Any], Awaitable[R]],
             ceiling_s: float = DEFAULT_BUDGET_S) -> Callable[[Any], Awaitable[R]]:
    """`endpoint` run under the budget its request carries (its `headers`)."""

    async def adopted(request: Any) -> R:
        set_current(from_headers(request.headers, ceiling_s))
        return await endpoint(request)

    adopted.__name__ = getattr(endpoint, "__name__", "endpoint")
    adopted.__doc__ = endpoint.__doc__
    return adopted
