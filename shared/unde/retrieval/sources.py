"""The I/O legs of dual retrieval: the embedder call, pgvector search, Ximilar collection search.

Each turns its source's answer into `Candidate`s on the common score scale (cosine
similarity); `DualRetrieval` only sees these callables. Each runs inside the request's budget
(`unde.budget.current()`): the embedder call's timeout, the kNN's pool wait and statements
(cancelled server-side when the budget runs out) and Ximilar's attempts all end with it.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool

from unde import budget
from unde.errors import StoreError, UpstreamError
from unde.providers.ximilar import XimilarClient
from unde.providers.ximilar.mapping import ximilar_similarity
from unde.retrieval.dual import Embedding, XimilarHits
from unde.retrieval.merge import METADATA_KEYS, Candidate, catalog_metadata
from unde.retrieval.search import SearchTuning, search
from unde.service_client import ServiceClient

#: What Ximilar returns with each hit (inserted by `unde ximilar sync`).
XIMILAR_FIELDS: Final[list[str]] = ["_id", "brand", "external_id", "image_urls", *METADATA_KEYS]


async def embed_crop(embedder: ServiceClient, image: bytes, *, timeout_s: float) -> Embedding:
    """The crop's vector from the embedder function (`POST /embed`)."""
    body = await embedder.post("/embed", {"image": {"base64": base64.b64encode(image).decode()}},
                               timeout_s=timeout_s)
    vector, version = body.get("embedding"), body.get("model_version")
    if (not isinstance(vector, list) or not vector or not isinstance(version, str)
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in vector)):
        raise UpstreamError("embedder", "/embed answered without a finite embedding and model_version")
    return Embedding([float(v) for v in vector], version)


def _image_urls(metadata: Mapping[str, Any], best_url: str) -> tuple[str, ...]:
    urls = [u for u in metadata.get("image_urls") or [] if isinstance(u, str)]
    if best_url and best_url not in urls:
        urls.insert(0, best_url)
    return tuple(urls)


async def pgvector_candidates(pool: AsyncConnectionPool, embedding: Embedding, top_k: int,
                              brands: Sequence[str] | None, *, tuning: SearchTuning) -> list[Candidate]:
    """The `top_k` SKUs among `brands` by their best photo, scores = cosine similarity."""
    left = budget.current().remaining()
    try:
        # The budget bounds the pool wait and the statements: psycopg cancels a running query on
        # the server when its task is cancelled.
        async with asyncio.timeout(left):
            hits = await search(pool, embedding.vector, model_version=embedding.model_version, k=top_k,
                                brands=brands, tuning=tuning, timeout_s=left)
    except psycopg.Error as exc:  # server restarting, connection cut, pool time-out: a store outage
        raise StoreError(f"pgvector search failed: {exc}") from exc
    except TimeoutError as exc:
        raise StoreError(f"pgvector search did not finish within the request's budget ({left:.2f}s)") from exc
    return [Candidate(brand=hit.brand, external_id=hit.sku_id, score=hit.score, source="pgvector",
                      image_urls=_image_urls(hit.metadata, hit.image_url),
                      metadata=catalog_metadata(hit.metadata))
            for hit in hits]


def ximilar_filter(brands: Sequence[str] | None) -> dict[str, Any] | None:
    """The mall pre-filter in Ximilar's (Mongo-style) filter syntax."""
    return None if brands is None else {"brand": {"$in": sorted(set(brands))}}


async def ximilar_candidates(client: XimilarClient, image: bytes, k: int,
                             brands: Sequence[str] | None, *, budget_s: float) -> XimilarHits:
    """Visual kNN in the Ximilar collection among `brands`; similarity from the distance."""
    if brands is not None and not brands:
        return XimilarHits([], 0)
    answer = await client.search(image, k=k, fields=XIMILAR_FIELDS, filter_=ximilar_filter(brands),
                                 deadline=budget.current().within(budget_s))
    candidates = []
    for record, distance in zip(answer.value.records, answer.value.distances, strict=True):
        brand, external_id = record.get("brand"), record.get("external_id")
        if not isinstance(brand, str) or not isinstance(external_id, str):
            continue  # a record inserted without our metadata cannot be offered
        urls = record.get("image_urls")
        candidates.append(Candidate(
            brand=brand, external_id=external_id, score=ximilar_similarity(distance),
            source="ximilar",
            image_urls=tuple(u for u in urls if isinstance(u, str)) if isinstance(urls, list) else (),
            metadata=catalog_metadata(record)))
    return XimilarHits(candidates, answer.credits)
