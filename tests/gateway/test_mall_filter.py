"""The mall pre-filter: brands from staging raw_stores (TTL-cached) applied to both sources."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from tests.fakes.ximilar_server import FakeXimilar
from tests.gateway.conftest import jpeg, make_client
from tests.gateway.fake_embedder import FakeEmbedder
from tests.gateway.gateway_app import b64, gateway, insert_catalog, insert_stores, keys, near, unit
from unde.db.pool import open_pool
from unde.retrieval.mall_brands import MallBrands

RED = (200, 30, 30)


async def test_mall_brands_cache_and_ttl(staging_url: str) -> None:
    insert_stores(staging_url, [("acme", "Dubai Hills Mall"), ("acme", "Dubai Hills Mall"),
                                ("zeta", "Dubai Hills Mall"), ("omega", "Mall of the Emirates")])
    now = [0.0]
    pool = await open_pool(staging_url, name="staging", min_size=0)
    try:
        brands = MallBrands(pool, ttl_s=60, clock=lambda: now[0])
        assert await brands.brands("Dubai Hills Mall") == ("acme", "zeta")
        assert await brands.brands("Nowhere") == ()
        insert_stores(staging_url, [("newco", "Dubai Hills Mall")])
        now[0] = 59.0
        assert await brands.brands("Dubai Hills Mall") == ("acme", "zeta")  # cached
        assert brands.queries == 2
        now[0] = 61.0
        assert await brands.brands("Dubai Hills Mall") == ("acme", "newco", "zeta")
        assert brands.queries == 3
        with psycopg.connect(staging_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE raw_stores RENAME TO raw_stores_gone")
        now[0] = 200.0  # expired, and the table is gone: the stale list is served
        assert await brands.brands("Dubai Hills Mall") == ("acme", "newco", "zeta")
    finally:
        await pool.close()


async def test_search_keeps_only_brands_in_the_mall(monkeypatch: pytest.MonkeyPatch,
                                                    production_url: str, staging_url: str,
                                                    fake_ximilar: FakeXimilar) -> None:
    # The nearest photos belong to a brand absent from the mall; the true top-k among the mall's
    # brands must still come back in full.
    rows = [("far", f"F{i}", near(0, 0.99 - i * 0.001, 10 + i)) for i in range(30)]
    rows += [("acme", f"A{i}", near(0, 0.9 - i * 0.01, 50 + i)) for i in range(5)]
    rows += [("zeta", f"Z{i}", near(0, 0.5 - i * 0.01, 80 + i)) for i in range(5)]
    insert_catalog(production_url, rows)
    insert_stores(staging_url, [("acme", "Dubai Hills Mall"), ("zeta", "Dubai Hills Mall"),
                                ("far", "Mall of the Emirates")])
    crop = jpeg(RED)
    async with httpx.AsyncClient() as http:
        await make_client(fake_ximilar, http).insert([
            {"_id": "far/F0/0", "_base64": b64(crop), "brand": "far", "external_id": "F0"},
            {"_id": "zeta/Z9/0", "_base64": b64(jpeg((190, 40, 40))), "brand": "zeta",
             "external_id": "Z9"}])
    with FakeEmbedder() as embedder:
        embedder.anchor(RED, unit((0, 1.0)))
        async with gateway(monkeypatch, production_url=production_url, staging_url=staging_url,
                           embedder_url=embedder.base_url, ximilar=fake_ximilar,
                           search_backend="dual") as (client, _):
            body = (await client.post("/search", json={
                "image": {"base64": b64(crop)}, "top_k": 8,
                "user_mall": "Dubai Hills Mall"})).json()
            unknown = (await client.post("/search", json={
                "image": {"base64": b64(crop)}, "user_mall": "Atlantis"})).json()
            everywhere = (await client.post("/search", json={
                "image": {"base64": b64(crop)}, "top_k": 3, "force_ximilar": False})).json()
    found = keys(body)
    assert {brand for brand, _, _ in found} == {"acme", "zeta"}
    assert [sku for _, sku, src in found if src == "pgvector"][:5] == [f"A{i}" for i in range(5)]
    assert ("zeta", "Z9", "ximilar") in found
    filter_sent = fake_ximilar.requests("visualKNN")[0].body["filter"]
    assert filter_sent == {"brand": {"$in": ["acme", "zeta"]}}
    assert unknown["candidates"] == [] and "unknown_mall" in unknown["degraded"]
    assert keys(everywhere)[0][0] == "far"  # no mall: no filter
