"""The vision gateway app in-process, wired to real databases and the two local fakes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from tests.fakes.ximilar_server import COLLECTION_ID, TOKEN, FakeXimilar
from tests.function_apps import client_for, load_function
from tests.gateway.fake_embedder import MODEL_VERSION
from unde.retrieval.sku_vectors import UPSERT_SQL

DIM = 512


def unit(*weights: tuple[int, float]) -> np.ndarray:
    """A unit vector from (axis, weight) pairs."""
    vector = np.zeros(DIM, dtype=np.float32)
    for axis, weight in weights:
        vector[axis] = weight
    return vector / np.linalg.norm(vector)


def near(axis: int, similarity: float, other_axis: int) -> np.ndarray:
    """A unit vector whose cosine similarity with `unit((axis, 1))` is `similarity`."""
    return unit((axis, similarity), (other_axis, float(np.sqrt(1 - similarity**2))))


def insert_catalog(production_url: str, rows: list[tuple[str, str, np.ndarray]]) -> None:
    """(brand, sku_id, vector) rows as catalog photos with indexer-style metadata."""
    with psycopg.connect(production_url, autocommit=True) as conn:
        register_vector(conn)
        for index, (brand, sku, vector) in enumerate(rows):
            url = f"http://images.test/{brand}/{sku}/0.jpg"
            metadata = {"name": f"{brand} {sku}", "price": 99.0, "currency": "AED",
                        "category": "top", "product_type": "shirt", "colour": "red",
                        "pattern": "solid", "material": "cotton", "image_urls": [url],
                        "image_kinds": ["flat"]}
            conn.execute(
                "INSERT INTO sku_image_embeddings (sku_id, brand, image_url, image_rank, image_hash,"
                " embedding, model_version, metadata) VALUES (%s,%s,%s,0,%s,%s,%s,%s)",
                (sku, brand, url, f"h{index}", vector, MODEL_VERSION, Jsonb(metadata)))
        pairs = sorted({(brand, sku) for brand, sku, _ in rows})
        conn.execute(UPSERT_SQL, {"mv": MODEL_VERSION, "brands": [b for b, _ in pairs],
                                  "skus": [s for _, s in pairs]})  # the indexer's SKU means


def insert_stores(staging_url: str, stores: list[tuple[str, str]]) -> None:
    """(brand, mall) stores in staging raw_stores."""
    with psycopg.connect(staging_url, autocommit=True) as conn:
        for index, (brand, mall) in enumerate(stores):
            conn.execute("INSERT INTO raw_stores (brand, store_id, name, mall_name) "
                         "VALUES (%s, %s, %s, %s)", (brand, f"s{index}", f"{brand} store", mall))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@asynccontextmanager
async def gateway(monkeypatch: pytest.MonkeyPatch, *, production_url: str, staging_url: str,
                  embedder_url: str, ximilar: FakeXimilar | None,
                  **env: Any) -> AsyncIterator[tuple[httpx.AsyncClient, ModuleType]]:
    """The app with env set; closes its pools and HTTP client afterwards."""
    settings: dict[str, Any] = {
        "UNDE_SECRETS_DIR": "/nonexistent", "PRODUCTION_DB_URL": production_url,
        "STAGING_DB_URL": staging_url, "EMBEDDER_URL": embedder_url, "DB_POOL_MIN": "0",
        "XIMILAR_MAX_RETRIES": "1", "XIMILAR_TIMEOUT_S": "2", "DETECT_PROVIDER": "auto",
        "TAG_PROVIDER": "auto", "SEARCH_BACKEND": "conditional", "ALLOWED_IMAGE_HOSTS": "",
    }
    if ximilar is not None:
        settings.update(XIMILAR_API_URL=ximilar.base_url, XIMILAR_API_TOKEN=TOKEN,
                        XIMILAR_COLLECTION_ID=COLLECTION_ID)
    else:
        monkeypatch.delenv("XIMILAR_API_TOKEN", raising=False)
        monkeypatch.delenv("XIMILAR_COLLECTION_ID", raising=False)
    settings.update({key.upper(): value for key, value in env.items()})
    for key, value in settings.items():
        monkeypatch.setenv(key, str(value))
    app, module = load_function("vision_gateway")
    try:
        async with client_for(app) as client:
            yield client, module
    finally:
        await _close(module)


async def _close(module: ModuleType) -> None:
    if module.RUNTIME.ready:
        await (await module.RUNTIME.get()).close()


def keys(body: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["brand"], c["external_id"], c["source"]) for c in body["candidates"]]
