"""Gemini through the google-genai SDK: structured JSON calls with bounded concurrency.

Policy lives here, once: every call has a timeout (`HttpOptions.timeout`), the SDK retries
429/5xx and transport time-outs (`HttpRetryOptions`), at most `GEMINI_CONCURRENCY` calls are
in flight per process, a circuit breaker stops calling a Gemini that keeps failing, and
answers are validated by a pydantic model — an answer that fails validation is asked for
once more, then reported as invalid (the caller decides the fallback). SDK and transport
errors are translated here, once, into `UpstreamUnavailable` / `UpstreamTimeout` /
`UpstreamError`. Token usage goes to `unde_gemini_tokens_total` and back to the caller.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import BaseModel, ValidationError

from unde.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from unde.metrics import CIRCUIT_STATE, GEMINI_TOKENS, UPSTREAM_ERRORS, UPSTREAM_LATENCY
from unde.rerank.candidates import TokenUsage

SERVICE = "gemini"
RETRY_STATUS_CODES = [429, 500, 502, 503, 504]
DEFAULT_API_VERSION = "v1beta"
KNOWN_API_VERSIONS = ("v1beta", "v1alpha", "v1")
#: Answers that fail validation are asked for this many times in all.
VALIDATION_ATTEMPTS = 2

M = TypeVar("M", bound=BaseModel)


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


def split_api_url(api_url: str | None) -> tuple[str | None, str]:
    """``https://host/v1beta`` → (``https://host``, ``v1beta``); the SDK adds the version."""
    if not api_url:
        return None, DEFAULT_API_VERSION
    parts = urlsplit(api_url.rstrip("/"))
    head, _, last = parts.path.rpartition("/")
    if last in KNOWN_API_VERSIONS:
        return urlunsplit(parts._replace(path=head)), last
    return api_url.rstrip("/"), DEFAULT_API_VERSION


class CircuitBreaker:
    """Opens after `failures` consecutive upstream failures; lets a probe through after
    `cooldown_s`."""

    def __init__(self, failures: int, cooldown_s: float) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._count = 0
        self._opened_at: float | None = None

    @property
    def open(self) -> bool:
        if self._opened_at is None:
            return False
        return time.monotonic() - self._opened_at < self.cooldown_s

    def check(self) -> None:
        """Raise `UpstreamUnavailable` while open."""
        if self.open:
            raise UpstreamUnavailable(
                SERVICE, f"circuit open after {self._count} consecutive failures; "
                         f"retry in {self.cooldown_s:.0f}s", retryable=True)

    def success(self) -> None:
        self._count = 0
        if self._opened_at is not None:
            self._opened_at = None
            CIRCUIT_STATE.labels(SERVICE).set(0)

    def failure(self) -> None:
        self._count += 1
        if self._count >= self.failures:
            self._opened_at = time.monotonic()
            CIRCUIT_STATE.labels(SERVICE).set(1)


@dataclass(frozen=True, slots=True)
class Structured(Generic[M]):
    """A validated answer, or why there is none (`error`), and the tokens spent."""

    value: M | None
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
    """One per process: the SDK client, the concurrency limit and the breaker."""

    def __init__(self, config: GeminiConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        base_url, api_version = split_api_url(config.api_url)
        retry = types.HttpRetryOptions(
            attempts=config.max_retries + 1,
            initial_delay=config.retry_delay_s,
            max_delay=max(config.retry_delay_s * 8, 0.001),
            http_status_codes=RETRY_STATUS_CODES,
        )
        options = types.HttpOptions(
            base_url=base_url, api_version=api_version, timeout=int(config.timeout_s * 1000),
            retry_options=retry, httpx_async_client=http)
        self._sdk = genai.Client(api_key=config.api_key, http_options=options)
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s)

    @property
    def model(self) -> str:
        return self.config.model

    def _config(self, schema: type[BaseModel]) -> types.GenerateContentConfig:
        thinking = (None if self.config.thinking_budget is None
                    else types.ThinkingConfig(thinking_budget=self.config.thinking_budget))
        return types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=schema, temperature=0.0,
            thinking_config=thinking)

    async def _generate(self, parts: list[types.Part], schema: type[BaseModel], operation: str,
                        usage: TokenUsage) -> str | None:
        self.breaker.check()
        started = time.perf_counter()
        try:
            async with self._semaphore:
                response = await self._sdk.aio.models.generate_content(
                    model=self.config.model, contents=[types.Content(role="user", parts=parts)],
                    config=self._config(schema))
        except Exception as exc:
            error = translate_error(exc, self.config.timeout_s)
            UPSTREAM_ERRORS.labels("llm_reranker", SERVICE, operation, error.code).inc()
            if isinstance(error, UpstreamUnavailable | UpstreamTimeout):
                self.breaker.failure()
            raise error from exc
        finally:
            UPSTREAM_LATENCY.labels("llm_reranker", SERVICE, operation).observe(
                time.perf_counter() - started)
        self.breaker.success()
        meta = response.usage_metadata
        if meta is not None:
            prompt = meta.prompt_token_count or 0
            output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
            usage.add(prompt, output)
            GEMINI_TOKENS.labels("prompt").inc(prompt)
            GEMINI_TOKENS.labels("output").inc(output)
        return response.text

    async def generate_structured(self, parts: list[types.Part], schema: type[M],
                                  operation: str) -> Structured[M]:
        """Ask for JSON matching `schema`; one more try if the answer does not validate.

        Upstream failures raise (already translated); invalid output does not — it comes
        back as `Structured.error`."""
        usage = TokenUsage()
        problem = "no answer"
        for _ in range(VALIDATION_ATTEMPTS):
            text = await self._generate(parts, schema, operation, usage)
            if not text:
                problem = "empty answer (no candidate text)"
                continue
            try:
                return Structured(schema.model_validate_json(text), None, usage)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "answer"
                problem = f"{where}: {first['msg']}"
        UPSTREAM_ERRORS.labels("llm_reranker", SERVICE, operation, "invalid_output").inc()
        return Structured(None, f"output failed validation twice ({problem})", usage)


def image_part(jpeg: bytes) -> types.Part:
    """An inline JPEG part."""
    return types.Part.from_bytes(data=jpeg, mime_type="image/jpeg")


def text_part(text: str) -> types.Part:
    return types.Part.from_text(text=text)
