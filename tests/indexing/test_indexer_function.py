"""The indexer function in-process: /plan, /embed_batch, /healthz, input validation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import functions_framework.aio
import httpx
import psycopg
import pytest

from unde.indexing.queue import QUEUE_DEPTH_SQL

from .conftest import ImageCdn, seed_catalog


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch, production_url: str, staging_url: str,
                 cdn: ImageCdn, tmp_path: object) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("PRODUCTION_DB_URL", production_url)
    monkeypatch.setenv("STAGING_DB_URL", staging_url)
    monkeypatch.setenv("ALLOWED_IMAGE_HOSTS", cdn.host)
    monkeypatch.setenv("EMBED_PROVIDER", "local")
    monkeypatch.setenv("INDEX_BATCH_SIZE", "4")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    app = functions_framework.aio.create_asgi_app(target="handle", source="functions/indexer/main.py")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fn",
                                 timeout=120) as http:
        yield http
        import sys

        main = sys.modules.get("main")
        indexer = getattr(main, "INDEXER", None)
        if indexer is not None and indexer.ready:
            await (await indexer.get()).close()
            indexer.reset()


async def test_plan_then_embed_batch_then_health(client: httpx.AsyncClient, staging_url: str,
                                                 production_url: str, cdn: ImageCdn) -> None:
    images = seed_catalog(staging_url, cdn, products=3, photos=2)
    planned = await client.post("/plan")
    assert planned.status_code == 200, planned.text
    assert planned.json()["enqueued"] == images and planned.json()["queue_depth"] == images
    first = await client.post("/embed_batch", json={"max_jobs": 4})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["claimed"] == 4 and body["inferred"] == 4 and body["queue_depth"] == images - 4
    assert body["model_version"] == "unde-descriptor-v1"
    rest = await client.post("/embed_batch", content=b"")  # default: INDEX_BATCH_SIZE
    assert rest.json()["claimed"] == images - 4 and rest.json()["queue_depth"] == 0
    health = (await client.get("/healthz")).json()
    assert health["model_version"] == "unde-descriptor-v1" and health["queue_depth"] == 0
    assert health["jobs"]["done"] == images and health["queue_depth_sql"] == QUEUE_DEPTH_SQL
    with psycopg.connect(production_url) as conn:
        assert conn.execute("SELECT count(*) FROM sku_image_embeddings").fetchone() == (images,)
    metrics = (await client.get("/metrics")).text
    assert "unde_index_queue_depth 0.0" in metrics
    assert 'unde_images_indexed_total{model_version="unde-descriptor-v1"}' in metrics


@pytest.mark.parametrize(("body", "headers", "status", "field"), [
    (b'{"max_jobs": 0}', {"content-type": "application/json"}, 422, "max_jobs"),
    (b'{"max_jobs": "many"}', {"content-type": "application/json"}, 422, "max_jobs"),
    (b'{"max_jobs": 5, "extra": 1}', {"content-type": "application/json"}, 422, "extra"),
    (b"{not json", {"content-type": "application/json"}, 400, "body"),
    (b"max_jobs=3", {"content-type": "text/plain"}, 415, "Content-Type"),
])
async def test_embed_batch_rejects_bad_input(client: httpx.AsyncClient, body: bytes,
                                             headers: dict[str, str], status: int, field: str) -> None:
    response = await client.post("/embed_batch", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["field"] == field


async def test_plan_rejects_parameters_and_unknown_routes(client: httpx.AsyncClient) -> None:
    response = await client.post("/plan", json={"model_version": "x"})
    assert response.status_code == 422 and response.json()["field"] == "body"
    assert (await client.get("/embed_batch")).status_code == 405
    assert (await client.post("/nope")).status_code == 404
