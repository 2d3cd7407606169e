"""What a failing Gemini may cost: a breaker fed per attempt, a retry budget per recognition.

Every attempt (a first try, a retry after 429/5xx/time-out, the second ask after an answer
that failed validation) goes through `CircuitBreaker.admit` first and reports back
(`success` / `failure`), so the breaker sees each call Gemini actually got — the SDK's own
retries are switched off (`HttpRetryOptions(attempts=1)`) and the retries happen here, on
tenacity's schedule (`retry_schedule`). Retries beyond a call's first attempt are taken from a
`RetryBudget` that every Gemini call of one recognition shares (its /tag and /rerank requests,
found by the request id in `RetryBudgets`), and stop when the request's deadline leaves no
time for another attempt.

The bound, per recognition and process: first attempts (one per /tag, ⌈candidates /
RERANK_BATCH⌉ per /rerank, one probe per batch whose answer was unusable) + at most
`GEMINI_REQUEST_RETRIES` retries; and once `GEMINI_BREAKER_FAILURES` consecutive attempts
failed, none at all until `GEMINI_BREAKER_COOLDOWN_S` has passed, then a single probe.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from cachetools import TTLCache
from tenacity import AsyncRetrying, RetryCallState, retry_base, stop_after_attempt, wait_exponential_jitter
from tenacity.stop import stop_base

from unde.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from unde.metrics import CIRCUIT_STATE
from unde.service_client import Deadline

SERVICE = "gemini"
#: An answer that fails validation is asked for this many times in all (single calls only).
VALIDATION_ATTEMPTS = 2
#: A retry is not started with less time than this left before the deadline.
MIN_ATTEMPT_S = 0.2


class CircuitOpen(UpstreamUnavailable):
    """The breaker refused the attempt: Gemini was not called."""

    def __init__(self, message: str) -> None:
        super().__init__(SERVICE, message, retryable=True)


class InvalidAnswer(UpstreamError):
    """Gemini answered, but not with JSON that matches the schema (counts as a failure)."""

    code = "invalid_output"

    def __init__(self, problem: str) -> None:
        super().__init__(SERVICE, f"answer failed validation ({problem})", retryable=True)
        self.problem = problem


class CircuitBreaker:
    """Closed → open after `failures` consecutive failed attempts → after `cooldown_s`
    half-open: exactly one probe attempt at a time; its success closes, its failure reopens."""

    def __init__(self, failures: int, cooldown_s: float) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._count = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def open(self) -> bool:
        """True while attempts are refused (cooling down, or a probe is out)."""
        if self._opened_at is None:
            return False
        return self._probing or time.monotonic() - self._opened_at < self.cooldown_s

    def admit(self) -> None:
        """Before each attempt: raise `CircuitOpen` unless this attempt may call Gemini."""
        if self._opened_at is None:
            return
        if self.open:
            raise CircuitOpen(f"circuit open after {self._count} consecutive failures; "
                              f"retry in {self.cooldown_s:.0f}s")
        self._probing = True  # half-open: this attempt is the probe

    def check(self) -> None:
        """Raise `CircuitOpen` while open, without taking the probe."""
        if self.open:
            raise CircuitOpen(f"circuit open after {self._count} consecutive failures")

    def success(self) -> None:
        self._count = 0
        self._probing = False
        if self._opened_at is not None:
            self._opened_at = None
            CIRCUIT_STATE.labels(SERVICE).set(0)

    def failure(self) -> None:
        self._count += 1
        if self._probing or self._count >= self.failures:
            self._probing = False
            self._opened_at = time.monotonic()
            CIRCUIT_STATE.labels(SERVICE).set(1)

    def release(self) -> None:
        """An attempt that says nothing about Gemini's health (e.g. HTTP 400) ends."""
        self._probing = False


@dataclass
class RetryBudget:
    """Retries one recognition may still spend on Gemini, and the attempts it made."""

    retries: int
    attempts: int = 0
    retried: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self) -> bool:
        """One retry, if any is left."""
        with self._lock:
            if self.retried >= self.retries:
                return False
            self.retried += 1
            return True

    def count_attempt(self) -> None:
        with self._lock:
            self.attempts += 1


class RetryBudgets:
    """One `RetryBudget` per request id for a while, so the /tag and /rerank requests of one
    recognition share theirs (a request without an id gets its own)."""

    def __init__(self, retries: int, ttl_s: float = 120.0, maxsize: int = 4096) -> None:
        self.retries = retries
        self._budgets: TTLCache[str, RetryBudget] = TTLCache(maxsize=maxsize, ttl=ttl_s)
        self._lock = threading.Lock()

    def for_request(self, request_id: str | None) -> RetryBudget:
        if request_id is None:
            return RetryBudget(self.retries)
        with self._lock:
            budget = self._budgets.get(request_id)
            if budget is None:
                budget = self._budgets[request_id] = RetryBudget(self.retries)
            return budget


def attempt_timeout(deadline: Deadline | None, cap_s: float) -> float:
    """The time-out of the next attempt: `cap_s`, or less when the deadline is nearer."""
    return deadline.timeout(cap_s) if deadline is not None else cap_s


class _RetryWorthIt(retry_base):
    """Retry transient upstream failures (429, 5xx, transport errors), and an invalid answer once
    if `retry_invalid`. A timed-out attempt is retried only against a known deadline: without
    one, a second full time-out would outlast what the caller waits (its /tag and /rerank
    time-outs are ~1–2 Gemini time-outs)."""

    def __init__(self, retry_invalid: bool, deadline_known: bool) -> None:
        self.retry_invalid = retry_invalid
        self.deadline_known = deadline_known

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, InvalidAnswer):
            return self.retry_invalid and retry_state.attempt_number < VALIDATION_ATTEMPTS
        if isinstance(exc, CircuitOpen):
            return False
        if isinstance(exc, UpstreamTimeout):
            return self.deadline_known
        return isinstance(exc, UpstreamUnavailable | UpstreamTimeout) and exc.retryable


class _OutOfBudget(stop_base):
    """Stop when the breaker is open, the deadline leaves no time, or the recognition's
    retries are spent (checked last: only a retry that will happen takes one)."""

    def __init__(self, budget: RetryBudget, breaker: CircuitBreaker, deadline: Deadline | None) -> None:
        self.budget = budget
        self.breaker = breaker
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self.breaker.open:
            return True
        if self.deadline is not None and \
                self.deadline.remaining() < retry_state.upcoming_sleep + MIN_ATTEMPT_S:
            return True
        return not self.budget.take()


def retry_schedule(budget: RetryBudget, breaker: CircuitBreaker, deadline: Deadline | None, *,
                   max_retries: int, delay_s: float, retry_invalid: bool) -> AsyncRetrying:
    """tenacity's loop for one Gemini call: at most `max_retries` retries, jittered
    exponential back-off from `delay_s`, all bounded by `budget` and the breaker."""
    return AsyncRetrying(
        retry=_RetryWorthIt(retry_invalid, deadline is not None),
        stop=stop_after_attempt(max_retries + 1) | _OutOfBudget(budget, breaker, deadline),
        wait=wait_exponential_jitter(initial=delay_s, max=max(delay_s * 8, 0.001), jitter=delay_s),
        reraise=True)
