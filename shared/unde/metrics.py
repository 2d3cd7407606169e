"""Prometheus metrics, defined once per process and labelled by service.

Every function serves them at `GET /metrics`. One process runs one function in production;
tests may run several in one process, hence the `service` label rather than registries.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)

HTTP_REQUESTS = Counter(
    "unde_http_requests_total", "HTTP requests served", ["service", "route", "method", "status"])
HTTP_LATENCY = Histogram(
    "unde_http_request_seconds", "HTTP request latency", ["service", "route", "method"],
    buckets=LATENCY_BUCKETS)
UPSTREAM_LATENCY = Histogram(
    "unde_upstream_seconds", "Latency of calls to other services and providers",
    ["service", "upstream", "operation"], buckets=LATENCY_BUCKETS)
UPSTREAM_ERRORS = Counter(
    "unde_upstream_errors_total", "Failed calls to other services and providers",
    ["service", "upstream", "operation", "kind"])
XIMILAR_CREDITS = Counter(
    "unde_ximilar_credits_total", "Ximilar credits spent", ["operation"])
GEMINI_TOKENS = Counter(
    "unde_gemini_tokens_total", "Gemini tokens used", ["kind"])
CIRCUIT_STATE = Gauge(
    "unde_circuit_open", "1 while a provider's circuit breaker is open", ["provider"])
QUEUE_DEPTH = Gauge("unde_index_queue_depth", "Indexing jobs ready to run")
IMAGES_INDEXED = Counter("unde_images_indexed_total", "Catalog images embedded and stored",
                         ["model_version"])
INFERENCE_SECONDS = Histogram(
    "unde_model_inference_seconds", "Model inference time", ["model_version", "mode"],
    buckets=LATENCY_BUCKETS)


def http_observer(service: str):  # type: ignore[no-untyped-def]
    """A `Router.observe` callback that records request count and latency."""

    def observe(route: str, method: str, status: int, seconds: float) -> None:
        HTTP_REQUESTS.labels(service, route, method, str(status)).inc()
        HTTP_LATENCY.labels(service, route, method).observe(seconds)

    return observe


async def metrics_endpoint(request: Request) -> Response:
    """`GET /metrics` in the Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
