"""The Ximilar client: one per process, owning policy — auth, timeouts, retries, rate, breaker.

Calls go: breaker check → token bucket → POST → classify. 429/5xx, connection errors and
time-outs are retried with jittered exponential backoff (a `Retry-After` header is honoured up
to the cap); 401/403 raise `ProviderMisconfigured` at once (a wrong token does not heal); any
other 4xx and malformed answers raise `UpstreamError` without retrying. A call that still
fails after its retries counts as one failure for the circuit breaker.

Every call runs inside a deadline — the one passed, else the request's budget
(`unde.budget.current()`): each attempt's timeout is the smaller of XIMILAR_TIMEOUT_S and what
is left, and a retry is made only when its backoff still leaves half an attempt's time-out. A call
whose budget is spent before its first attempt is not a health signal for the breaker.

Credits (the spec's prices: detect 5 per image, tags 15 per image, search 10 per query) are
counted on every answered call and on every attempt that timed out after the request was sent
(Ximilar bills those: the work was done, the answer came too late). A `CreditMeter` passed to
an operation receives its credits whether the call succeeds or fails.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import httpx

from unde import budget
from unde.budget import Deadline
from unde.errors import (
    ProviderMisconfigured,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from unde.metrics import UPSTREAM_ERRORS, UPSTREAM_LATENCY, XIMILAR_CREDITS
from unde.providers.ximilar import wire
from unde.providers.ximilar.breaker import CircuitBreaker
from unde.providers.ximilar.ratelimit import TokenBucket
from unde.providers.ximilar.wire import XimilarMalformed

DETECT_CREDITS: Final = 5
TAG_CREDITS: Final = 15
SEARCH_CREDITS: Final = 10

#: A retry is made only when, after its backoff, this share of XIMILAR_TIMEOUT_S is still left
#: in the deadline: a shorter attempt would mostly time out again (and be billed again).
RETRY_MIN_SHARE: Final = 0.5

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Priced(Generic[T]):
    """A result together with the credits the call spent."""

    value: T
    credits: int


@dataclass(slots=True)
class CreditMeter:
    """Credits one logical operation spent, its billed time-outs included."""

    credits: int = 0


@dataclass(frozen=True, slots=True)
class _Price:
    operation: str
    credits: int
    meter: CreditMeter


@dataclass(frozen=True, slots=True)
class XimilarConfig:
    base_url: str
    token: str
    collection_id: str | None = None
    timeout_s: float = 5.0
    max_retries: int = 2
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 3.0


class XimilarClient:
    """Async client for the fashion tagging and fashion search APIs."""

    def __init__(self, http: httpx.AsyncClient, config: XimilarConfig, *, limiter: TokenBucket,
                 breaker: CircuitBreaker, caller: str = "vision_gateway",
                 jitter: Callable[[], float] = random.random) -> None:
        self.http = http
        self.config = config
        self.limiter = limiter
        self.breaker = breaker
        self.caller = caller
        self._jitter = jitter
        self.credits_spent: dict[str, int] = {"detect": 0, "tag": 0, "search": 0}
        self.attempts = 0  # HTTP requests actually sent (tests, healthz)

    # ---- public operations -------------------------------------------------------------

    async def detect_tags(self, images: Sequence[bytes], *, deadline: Deadline | None = None,
                          meter: CreditMeter | None = None) -> Priced[list[wire.DetectedImage]]:
        """Fashion detection + tags for each image (batched by 10)."""
        meter = meter or CreditMeter()
        parsed = await self._batched(wire.DETECT_TAGS_PATH, images, deadline, wire.parse_detected,
                                     ("detect", DETECT_CREDITS, meter))
        return Priced(parsed, meter.credits)

    async def tags(self, images: Sequence[bytes], *, deadline: Deadline | None = None,
                   meter: CreditMeter | None = None) -> Priced[list[dict[str, list[wire.Tag]]]]:
        """Fashion tags of each (cropped) image (batched by 10)."""
        meter = meter or CreditMeter()
        parsed = await self._batched(wire.TAGS_PATH, images, deadline, wire.parse_record_tags,
                                     ("tag", TAG_CREDITS, meter))
        return Priced(parsed, meter.credits)

    async def search(self, image: bytes, *, k: int, fields: list[str],
                     filter_: dict[str, Any] | None = None, deadline: Deadline | None = None,
                     meter: CreditMeter | None = None) -> Priced[wire.SearchAnswer]:
        """Visual kNN over the configured collection."""
        meter = meter or CreditMeter()
        body = wire.search_body(image, k, fields, filter_)
        answer = await self._post(wire.SEARCH_PATH, body, deadline, wire.parse_search,
                                  collection=True, price=_Price("search", SEARCH_CREDITS, meter))
        return Priced(answer, meter.credits)

    async def insert(self, records: list[dict[str, Any]]) -> None:
        """Insert up to 10 records (`_id`, `_url`/`_base64`, metadata) into the collection."""
        await self._post(wire.INSERT_PATH, wire.records_body(records), None,
                         wire.check_record_statuses, collection=True)

    async def delete(self, ids: list[str]) -> None:
        """Delete up to 10 records by `_id` from the collection."""
        await self._post(wire.DELETE_PATH, wire.records_body([{"_id": i} for i in ids]), None,
                         wire.check_record_statuses, collection=True)

    async def all_ids(self) -> list[str]:
        """Every `_id` in the collection."""
        return await self._post(wire.ALL_IDS_PATH, {}, None, wire.parse_ids, collection=True)

    # ---- plumbing ----------------------------------------------------------------------

    def _spend(self, price: _Price | None) -> None:
        if price is None:
            return
        price.meter.credits += price.credits
        self.credits_spent[price.operation] += price.credits
        XIMILAR_CREDITS.labels(price.operation).inc(price.credits)

    async def _batched(self, path: str, images: Sequence[bytes], deadline: Deadline | None,
                       parse: Callable[[dict[str, Any], str], T],
                       priced: tuple[str, int, CreditMeter]) -> list[T]:
        operation, per_image, meter = priced
        chunks = [images[i:i + wire.MAX_RECORDS] for i in range(0, len(images), wire.MAX_RECORDS)]

        async def one(chunk: Sequence[bytes]) -> list[T]:
            def parse_all(body: dict[str, Any]) -> list[T]:
                records = wire.checked_records(body, len(chunk))
                return [parse(record, f"records[{i}]") for i, record in enumerate(records)]

            return await self._post(path, wire.records_body([wire.image_record(d) for d in chunk]),
                                    deadline, parse_all,
                                    price=_Price(operation, per_image * len(chunk), meter))

        results = await asyncio.gather(*(one(chunk) for chunk in chunks))
        return [record for chunk in results for record in chunk]

    def _headers(self, collection: bool) -> dict[str, str]:
        headers = {"Authorization": f"Token {self.config.token}"}
        if collection:
            if not self.config.collection_id:
                raise ProviderMisconfigured(wire.SERVICE, "XIMILAR_COLLECTION_ID is not set")
            headers["collection-id"] = self.config.collection_id
        return headers

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None and retry_after.replace(".", "", 1).isdigit():
            return min(float(retry_after), self.config.backoff_cap_s)
        ceiling = min(self.config.backoff_cap_s, self.config.backoff_base_s * 2 ** attempt)
        return ceiling * (0.5 + self._jitter() / 2)  # "equal jitter": spread, never zero

    async def _post(self, path: str, body: dict[str, Any], deadline: Deadline | None,
                    parse: Callable[[dict[str, Any]], R], *, collection: bool = False,
                    price: _Price | None = None) -> R:
        """One logical call: breaker, retries, then `parse` (its failures count as malformed)."""
        headers = self._headers(collection)
        deadline = deadline or budget.current()
        if not deadline.allows(0.0):
            raise _budget_spent(path)
        self.breaker.before_call()
        try:
            result = parse(await self._post_with_retries(path, body, headers, deadline, price))
        except (ProviderMisconfigured, budget.BudgetSpent, asyncio.CancelledError):
            self.breaker.abandon_probe()
            raise
        except UpstreamError as exc:
            if exc.retryable or isinstance(exc, XimilarMalformed):
                self.breaker.record_failure()
            else:
                self.breaker.record_success()  # it answered; the request was at fault
            raise
        self.breaker.record_success()
        return result

    async def _post_with_retries(self, path: str, body: dict[str, Any], headers: dict[str, str],
                                 deadline: Deadline, price: _Price | None) -> dict[str, Any]:
        url = f"{self.config.base_url.rstrip('/')}/{path}"
        attempt = 0
        while True:
            retry_after: str | None = None
            try:
                answer = await self._attempt(url, path, body, headers, deadline, price)
                self._spend(price)
                return answer
            except _Retryable as exc:
                error, retry_after = exc.error, exc.retry_after
            except wire.XimilarStatusError as exc:
                if not exc.retryable:
                    raise
                error = exc
            if attempt >= self.config.max_retries:
                raise error
            pause = self._backoff(attempt, retry_after)
            if not deadline.allows(pause + self.config.timeout_s * RETRY_MIN_SHARE):
                raise error
            await asyncio.sleep(pause)
            attempt += 1

    async def _attempt(self, url: str, path: str, body: dict[str, Any], headers: dict[str, str],
                       deadline: Deadline, price: _Price | None) -> dict[str, Any]:
        await self.limiter.acquire()
        if not deadline.allows(0.0):
            raise _budget_spent(path)
        timeout = deadline.timeout(self.config.timeout_s)
        self.attempts += 1
        started = time.perf_counter()
        try:
            response = await self.http.post(url, json=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            self._count_error(path, "timeout")
            if isinstance(exc, httpx.ReadTimeout):  # sent in full: Ximilar did (and bills) the work
                self._spend(price)
            raise _Retryable(UpstreamTimeout(wire.SERVICE, f"{path} took over {timeout:.2f}s")) from exc
        except httpx.HTTPError as exc:
            self._count_error(path, "connection")
            raise _Retryable(UpstreamUnavailable(
                wire.SERVICE, f"{path}: {exc.__class__.__name__}: {exc}", retryable=True)) from exc
        finally:
            UPSTREAM_LATENCY.labels(self.caller, wire.SERVICE, path).observe(
                time.perf_counter() - started)
        return self._classify(path, response)

    def _classify(self, path: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status in (401, 403):
            self._count_error(path, str(status))
            raise ProviderMisconfigured(
                wire.SERVICE, f"{path}: HTTP {status}: check XIMILAR_API_TOKEN "
                f"({_detail(response)})")
        if status == 429 or status >= 500:
            self._count_error(path, str(status))
            raise _Retryable(UpstreamUnavailable(wire.SERVICE, f"{path}: HTTP {status}: "
                                                 f"{_detail(response)}", retryable=True),
                             response.headers.get("retry-after"))
        if status >= 400:
            self._count_error(path, str(status))
            raise UpstreamError(wire.SERVICE, f"{path}: HTTP {status}: {_detail(response)}")
        try:
            decoded = response.json()
        except ValueError as exc:
            self._count_error(path, "malformed")
            raise XimilarMalformed(f"{path}: answer is not JSON") from exc
        try:
            return wire.checked_body(decoded)
        except wire.XimilarStatusError:
            self._count_error(path, "status")
            raise
        except UpstreamError as exc:
            self._count_error(path, "malformed")
            raise XimilarMalformed(f"{path}: {exc}") from exc

    def _count_error(self, path: str, kind: str) -> None:
        UPSTREAM_ERRORS.labels(self.caller, wire.SERVICE, path, kind).inc()


def _budget_spent(path: str) -> budget.BudgetSpent:
    """The request's budget left no time to call Ximilar at all (says nothing of its health)."""
    return budget.BudgetSpent(f"Ximilar {path}")


class _Retryable(Exception):  # internal control flow, never escapes
    def __init__(self, error: UpstreamError, retry_after: str | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or "no body"
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("status") or body)[:200]
    return str(body)[:200]
