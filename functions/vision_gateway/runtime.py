"""The vision gateway's runtime: every client, pool and policy it serves with, built once.

`build_runtime(settings, **overrides)` builds the HTTP client, the Ximilar client, the embedder
client, the image loader and the dual retrieval; the production pool (refusing a pgvector older
than 0.8) and the staging pool behind the mall-brand cache connect on first use, so `/detect`
and `/tag` answer while a database is down. A test passes its own `http` (or any part) instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from unde.db.embedded import resolve_urls
from unde.db.pgvector import require_pgvector
from unde.db.pool import open_pool
from unde.errors import ConfigError
from unde.fetch import FetchPolicy
from unde.providers import garments
from unde.providers.ximilar import XimilarClient, client_from_settings
from unde.retrieval.dual import DualRetrieval, Embedding, XimilarHits
from unde.retrieval.mall_brands import MallBrands
from unde.retrieval.merge import Candidate
from unde.retrieval.search import SearchTuning
from unde.retrieval.sources import embed_crop, pgvector_candidates, ximilar_candidates
from unde.runtime import Lazy
from unde.service_client import ServiceClient, http_limits
from unde.settings import VisionGatewaySettings, secret_value
from unde.vision.image_input import ImageLoader

SERVICE = "vision_gateway"


@dataclass(frozen=True, slots=True)
class Providers:
    """Who answers each step, resolved once from the settings ("auto" → Ximilar if configured)."""

    detect: garments.Provider
    tag: garments.Provider

    @classmethod
    def of(cls, settings: VisionGatewaySettings) -> Providers:
        chosen = cls(garments.resolve_provider(settings.detect_provider, settings.ximilar_configured),
                     garments.resolve_provider(settings.tag_provider, settings.ximilar_configured))
        if "ximilar" in (chosen.detect, chosen.tag) and not settings.ximilar_configured:
            raise ConfigError("DETECT_PROVIDER/TAG_PROVIDER=ximilar needs XIMILAR_API_TOKEN")
        if settings.search_backend == "ximilar" and not searchable(settings):
            raise ConfigError("SEARCH_BACKEND=ximilar needs XIMILAR_API_TOKEN and XIMILAR_COLLECTION_ID")
        return chosen


def searchable(settings: VisionGatewaySettings) -> bool:
    """Can the Ximilar collection be searched (a token and a collection)?"""
    return settings.ximilar_configured and bool(settings.ximilar_collection_id)


@dataclass(slots=True)
class Runtime:
    settings: VisionGatewaySettings
    providers: Providers
    http: httpx.AsyncClient
    ximilar: XimilarClient
    production: Lazy[AsyncConnectionPool]
    mall_brands: Lazy[MallBrands]
    embedder: ServiceClient
    loader: ImageLoader
    retrieval: DualRetrieval

    async def close(self) -> None:
        if self.production.ready:
            await (await self.production.get()).close()
        if self.mall_brands.ready:
            await (await self.mall_brands.get()).pool.close()
        await self.http.aclose()


def tuning(settings: VisionGatewaySettings) -> SearchTuning:
    return SearchTuning(probes=settings.search_ivf_probes, candidates=settings.search_sku_candidates,
                        exact_rows=settings.search_exact_rows)


def retrieval(settings: VisionGatewaySettings, embedder: ServiceClient, production: Lazy[AsyncConnectionPool],
              ximilar: XimilarClient) -> DualRetrieval:
    """The SEARCH_BACKEND policy over the three I/O legs."""
    search_tuning = tuning(settings)

    async def embed(image: bytes) -> Embedding:
        return await embed_crop(embedder, image, timeout_s=settings.embedder_timeout_s)

    async def pgvector(embedding: Embedding, top_k: int, brands: Sequence[str] | None) -> list[Candidate]:
        return await pgvector_candidates(await production.get(), embedding, top_k, brands, tuning=search_tuning)

    async def by_ximilar(image: bytes, k: int, brands: Sequence[str] | None) -> XimilarHits:
        return await ximilar_candidates(ximilar, image, k, brands, budget_s=settings.ximilar_timeout_s)

    return DualRetrieval(backend=settings.search_backend, threshold=settings.confidence_threshold,
                         margin=settings.margin, ximilar_top_k=settings.ximilar_top_k, embed=embed,
                         pgvector=pgvector, ximilar=by_ximilar if searchable(settings) else None)


def _urls(settings: VisionGatewaySettings) -> Lazy[tuple[str, str]]:
    async def resolve() -> tuple[str, str]:
        urls = await asyncio.to_thread(resolve_urls, secret_value(settings.production_db_url),
                                       secret_value(settings.staging_db_url), settings.data_dir)
        return urls.production, urls.staging
    return Lazy(resolve)


def _pools(settings: VisionGatewaySettings) -> tuple[Lazy[AsyncConnectionPool], Lazy[MallBrands]]:
    urls = _urls(settings)
    sizes: dict[str, Any] = {"min_size": settings.db_pool_min, "max_size": settings.db_pool_max,
                             "statement_timeout_ms": settings.db_statement_timeout_ms}

    async def production() -> AsyncConnectionPool:
        pool = await open_pool((await urls.get())[0], name="production", vector=True, **sizes)
        try:
            await require_pgvector(pool)
        except BaseException:
            await pool.close()
            raise
        return pool

    async def mall_brands() -> MallBrands:
        pool = await open_pool((await urls.get())[1], name="staging", **sizes)
        return MallBrands(pool, settings.mall_brands_ttl_s)

    return Lazy(production), Lazy(mall_brands)


async def build_runtime(settings: VisionGatewaySettings, *, http: httpx.AsyncClient | None = None,
                        **overrides: Any) -> Runtime:
    """Everything the gateway serves with; `overrides` replace any built part by name."""
    http = http or httpx.AsyncClient(timeout=httpx.Timeout(settings.fetch_timeout_s),
                                     limits=http_limits(max_keepalive=20))
    ximilar = overrides.pop("ximilar", None) or client_from_settings(settings, http)
    production, mall_brands = _pools(settings)
    production = overrides.pop("production", production)
    embedder = overrides.pop("embedder", None) or ServiceClient(
        "embedder", settings.embedder_url, http, caller=SERVICE, token=secret_value(settings.internal_token),
        default_timeout_s=settings.embedder_timeout_s)
    loader = overrides.pop("loader", None) or ImageLoader(
        http, FetchPolicy.from_settings(settings), settings.image_max_pixels)
    parts: dict[str, Any] = {
        "settings": settings, "providers": Providers.of(settings), "http": http, "ximilar": ximilar,
        "production": production, "mall_brands": mall_brands, "embedder": embedder, "loader": loader,
        "retrieval": retrieval(settings, embedder, production, ximilar)}
    return Runtime(**{**parts, **overrides})
