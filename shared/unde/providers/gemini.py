"""Gemini through the google-genai SDK: structured JSON calls with bounded concurrency.

Policy lives here and in `gemini_policy`, once: every attempt has a time-out
(`HttpOptions.timeout`, shortened to the request's deadline), at most `GEMINI_CONCURRENCY`
attempts are in flight per process (tagging and comparing share them), and the SDK's own
retries are off — retries of 429/5xx/time-outs and the second ask after an invalid answer run
on `gemini_policy.retry_schedule`, so the circuit breaker and the recognition's retry budget
see every attempt. Answers are validated by a pydantic type; an answer that fails validation
counts as a failed attempt (breaker) and comes back as `Structured.error` (the caller decides
the fallback). SDK and transport errors are translated here, once, into
`UpstreamUnavailable` / `UpstreamTimeout` / `UpstreamError`. Token usage goes to
`unde_gemini_tokens_total` and back to the caller.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import TypeAdapter, ValidationError

from unde.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from unde.metrics import GEMINI_TOKENS, UPSTREAM_ERRORS, UPSTREAM_LATENCY
from unde.providers.gemini_policy import (
    CircuitBreaker,
    InvalidAnswer,
    RetryBudget,
    attempt_timeout,
    retry_schedule,
)
from unde.rerank.candidates import TokenUsage
from unde.service_client import Deadline

SERVICE = "gemini"
DEFAULT_API_VERSION = "v1beta"
KNOWN_API_VERSIONS = ("v1beta", "v1alpha", "v1")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GeminiConfig:
    """What the client needs from `LlmRerankerSettings`."""

    api_key: str
    model: str = "gemini-2.5-flash"
    api_url: str | None = None
    timeout_s: float = 8.0
    max_retries: int = 2
    retry_delay_s: float = 0.5
    concurrency: int = 10
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    thinking_budget: int | None = 0
    request_retries: int = 3


def split_api_url(api_url: str | None) -> tuple[str | None, str]:
    """``https://host/v1beta`` → (``https://host``, ``v1beta``); the SDK adds the version."""
    if not api_url:
        return None, DEFAULT_API_VERSION
    parts = urlsplit(api_url.rstrip("/"))
    head, _, last = parts.path.rpartition("/")
    if last in KNOWN_API_VERSIONS:
        return urlunsplit(parts._replace(path=head)), last
    return api_url.rstrip("/"), DEFAULT_API_VERSION


@dataclass(frozen=True, slots=True)
class Structured(Generic[T]):
    """A validated answer, or why there is none (`error`), and the tokens spent."""

    value: T | None
    error: str | None
    usage: TokenUsage


def translate_error(exc: Exception, timeout_s: float) -> UpstreamError:
    """SDK / transport exception → the project's upstream error (done once, here)."""
    if isinstance(exc, genai_errors.APIError):
        code = exc.code
        detail = f"HTTP {code}: {(exc.message or exc.status or '')[:200]}"
        if code == 429 or code >= 500:
            return UpstreamUnavailable(SERVICE, detail, retryable=True)
        if code in (401, 403) or "API key" in (exc.message or ""):
            return UpstreamUnavailable(SERVICE, f"credentials rejected ({detail})")
        return UpstreamError(SERVICE, detail)
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return UpstreamTimeout(SERVICE, f"no answer within {timeout_s:.2f}s")
    return UpstreamUnavailable(SERVICE, f"{exc.__class__.__name__}: {exc}", retryable=True)


class GeminiClient:
    """One per process: the SDK client (its retries off), the concurrency limit, the breaker."""

    def __init__(self, config: GeminiConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        base_url, api_version = split_api_url(config.api_url)
        options = types.HttpOptions(
            base_url=base_url, api_version=api_version, timeout=int(config.timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1), httpx_async_client=http)
        self._sdk = genai.Client(api_key=config.api_key, http_options=options)
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s)

    @property
    def model(self) -> str:
        return self.config.model

    def _config(self, schema: Any, timeout_s: float) -> types.GenerateContentConfig:
        thinking = (None if self.config.thinking_budget is None
                    else types.ThinkingConfig(thinking_budget=self.config.thinking_budget))
        return types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=schema, temperature=0.0,
            thinking_config=thinking, http_options=types.HttpOptions(timeout=max(1, int(timeout_s * 1000))))

    async def _attempt(self, parts: list[types.Part], schema: Any, adapter: TypeAdapter[T], operation: str,
                       usage: TokenUsage, budget: RetryBudget, deadline: Deadline | None) -> T:
        """One call to Gemini: admitted by the breaker, counted, its outcome reported back."""
        timeout_s = attempt_timeout(deadline, self.config.timeout_s)
        async with self._semaphore:
            self.breaker.admit()
            budget.count_attempt()
            started = time.perf_counter()
            try:
                response = await self._sdk.aio.models.generate_content(
                    model=self.config.model, contents=[types.Content(role="user", parts=parts)],
                    config=self._config(schema, timeout_s))
            except Exception as exc:
                error = translate_error(exc, timeout_s)
                UPSTREAM_ERRORS.labels("llm_reranker", SERVICE, operation, error.code).inc()
                if isinstance(error, UpstreamUnavailable | UpstreamTimeout):
                    self.breaker.failure()
                else:
                    self.breaker.release()
                raise error from exc
            finally:
                UPSTREAM_LATENCY.labels("llm_reranker", SERVICE, operation).observe(
                    time.perf_counter() - started)
        meta = response.usage_metadata
        if meta is not None:
            prompt = meta.prompt_token_count or 0
            output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
            usage.add(prompt, output)
            GEMINI_TOKENS.labels("prompt").inc(prompt)
            GEMINI_TOKENS.labels("output").inc(output)
        try:
            value = _validated(response.text, adapter)
        except InvalidAnswer:
            UPSTREAM_ERRORS.labels("llm_reranker", SERVICE, operation, "invalid_output").inc()
            self.breaker.failure()
            raise
        self.breaker.success()
        return value

    async def generate_structured(self, parts: list[types.Part], schema: Any, operation: str,
                                  budget: RetryBudget | None = None, deadline: Deadline | None = None,
                                  *, retry_invalid: bool = True) -> Structured[Any]:
        """Ask for JSON matching `schema` (a pydantic model or e.g. ``list[Model]``).

        Retries (transient failures; one more ask after an invalid answer when `retry_invalid`)
        come from `budget`, shared by the recognition's calls, and stop at `deadline`.
        Upstream failures raise (already translated); invalid output does not — it comes back
        as `Structured.error`."""
        usage = TokenUsage()
        budget = budget if budget is not None else RetryBudget(self.config.max_retries)
        adapter: TypeAdapter[Any] = TypeAdapter(schema)
        schedule = retry_schedule(budget, self.breaker, deadline, max_retries=self.config.max_retries,
                                  delay_s=self.config.retry_delay_s, retry_invalid=retry_invalid)
        try:
            async for attempt in schedule:
                with attempt:
                    value = await self._attempt(parts, schema, adapter, operation, usage, budget, deadline)
                    return Structured(value, None, usage)
        except InvalidAnswer as exc:
            tries = schedule.statistics.get("attempt_number", 1)
            return Structured(None, f"output failed validation, {tries} attempt(s) ({exc.problem})", usage)
        raise AssertionError("unreachable: tenacity either returns or raises")


def _validated(text: str | None, adapter: TypeAdapter[T]) -> T:
    if not text:
        raise InvalidAnswer("empty answer (no candidate text)")
    try:
        return adapter.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        raise InvalidAnswer(f"{where}: {first['msg']}") from None


def image_part(jpeg: bytes) -> types.Part:
    """An inline JPEG part."""
    return types.Part.from_bytes(data=jpeg, mime_type="image/jpeg")


def text_part(text: str) -> types.Part:
    return types.Part.from_text(text=text)
