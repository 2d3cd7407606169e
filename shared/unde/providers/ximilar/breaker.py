"""A circuit breaker: after N consecutive failures stop calling for a cool-down, then probe.

closed ──N failures──▶ open ──cool-down over──▶ half-open ──probe ok──▶ closed
                         ▲                          │
                         └──────probe failed────────┘

While open (and while a half-open probe is in flight) calls fail fast with
`UpstreamUnavailable`, so a dead provider costs no time and no credits. The state is exported
as `unde_circuit_open{provider}` (1 open, 0.5 half-open, 0 closed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from unde.errors import UpstreamUnavailable
from unde.metrics import CIRCUIT_STATE


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_GAUGE = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 0.5, BreakerState.OPEN: 1.0}


class CircuitBreaker:
    """Consecutive-failure breaker for one provider."""

    def __init__(self, provider: str, *, failures: int, cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.provider = provider
        self.failure_threshold = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._publish()

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose cool-down is over reads half-open)."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return self._state

    def before_call(self) -> None:
        """Raise UpstreamUnavailable when the call must not be made now."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._state = BreakerState.HALF_OPEN
            self._probing = True
            self._publish()
            return
        left = max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
        raise UpstreamUnavailable(
            self.provider, f"circuit open after {self._failures} consecutive failures; "
            f"next probe in {left:.1f}s")

    def record_success(self) -> None:
        self._failures = 0
        self._probing = False
        self._state = BreakerState.CLOSED
        self._publish()

    def record_failure(self) -> None:
        self._failures += 1
        was_probe = self._probing
        self._probing = False
        if was_probe or self._failures >= self.failure_threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
        self._publish()

    def abandon_probe(self) -> None:
        """A call ended without telling anything about health (cancelled, misconfigured)."""
        self._probing = False

    def _publish(self) -> None:
        CIRCUIT_STATE.labels(self.provider).set(_GAUGE[self._state])
