"""Ximilar, the production provider for fashion detection, tags and collection search.

Modules: `wire` (JSON in and out, no I/O), `client` (HTTP policy), `ratelimit` (token
bucket), `breaker` (circuit breaker), `mapping` (their taxonomy and distances → ours),
`sync` (filling the search collection from the catalog).
"""

from __future__ import annotations

import httpx

from unde.providers.ximilar.breaker import BreakerState, CircuitBreaker
from unde.providers.ximilar.client import (
    DETECT_CREDITS,
    SEARCH_CREDITS,
    TAG_CREDITS,
    CreditMeter,
    Priced,
    XimilarClient,
    XimilarConfig,
)
from unde.providers.ximilar.ratelimit import TokenBucket
from unde.providers.ximilar.wire import XimilarMalformed
from unde.settings import VisionGatewaySettings

__all__ = [
    "DETECT_CREDITS", "SEARCH_CREDITS", "TAG_CREDITS", "BreakerState", "CircuitBreaker", "CreditMeter",
    "Priced",
    "TokenBucket", "XimilarClient", "XimilarConfig", "XimilarMalformed", "client_from_settings",
]


def client_from_settings(settings: VisionGatewaySettings, http: httpx.AsyncClient) -> XimilarClient:
    """The process's Ximilar client (settings must carry XIMILAR_API_TOKEN)."""
    token = settings.ximilar_api_token.get_secret_value() if settings.ximilar_api_token else ""
    config = XimilarConfig(
        base_url=settings.ximilar_api_url,
        token=token,
        collection_id=settings.ximilar_collection_id,
        timeout_s=settings.ximilar_timeout_s,
        max_retries=settings.ximilar_max_retries,
    )
    return XimilarClient(
        http, config,
        limiter=TokenBucket(settings.ximilar_rate_per_s),
        breaker=CircuitBreaker("ximilar", failures=settings.ximilar_breaker_failures,
                               cooldown_s=settings.ximilar_breaker_cooldown_s),
    )
