"""The planner enqueues exactly the catalog images not yet embedded, once."""

from __future__ import annotations

import psycopg

from unde.indexing.planner import catalog_images, plan_missing, product_metadata

from .conftest import ImageCdn, add_product, jpeg, seed_catalog

MODEL = "test-embedder-v1"


async def _plan(staging_url: str, production_url: str, model: str = MODEL):  # type: ignore[no-untyped-def]
    async with (await psycopg.AsyncConnection.connect(staging_url) as staging,
                await psycopg.AsyncConnection.connect(production_url) as production):
        return await plan_missing(staging, production, model)


async def test_plan_enqueues_every_image_once_with_metadata(
        staging_url: str, production_url: str, cdn: ImageCdn) -> None:
    images = seed_catalog(staging_url, cdn, products=4, photos=3)
    first = await _plan(staging_url, production_url)
    assert (first.products, first.images, first.enqueued, first.already_embedded) == (4, images, images, 0)
    again = await _plan(staging_url, production_url)
    assert (again.enqueued, again.already_queued) == (0, images)
    with psycopg.connect(production_url) as conn:
        rows = conn.execute("SELECT image_rank, status, attempts, metadata FROM index_jobs "
                            "WHERE sku_id = 'SKU-001' ORDER BY image_rank").fetchall()
    assert [r[0] for r in rows] == [0, 1, 2] and {r[1] for r in rows} == {"pending"}
    metadata = rows[0][3]
    assert metadata["name"] == "Shirt SKU-001" and metadata["price"] == 199.5
    assert metadata["currency"] == "AED" and metadata["pattern"] == "striped"
    assert len(metadata["image_urls"]) == 3 and metadata["image_kinds"] == ["flat"] * 3


async def test_plan_skips_embedded_images_and_picks_up_new_products(
        staging_url: str, production_url: str, cdn: ImageCdn) -> None:
    urls = add_product(staging_url, cdn, "sable", "A1", [jpeg((1, 2, 3)), jpeg((9, 9, 9))])
    with psycopg.connect(production_url) as conn:
        conn.execute("INSERT INTO sku_image_embeddings (sku_id, brand, image_url, image_rank, image_hash,"
                     " model_version) VALUES ('A1', 'sable', %s, 0, 'h', %s)", (urls[0], MODEL))
    report = await _plan(staging_url, production_url)
    assert (report.images, report.already_embedded, report.enqueued) == (2, 1, 1)
    add_product(staging_url, cdn, "sable", "A2", [jpeg((5, 5, 5))])
    assert (await _plan(staging_url, production_url)).enqueued == 1
    # A new model version needs every image again.
    assert (await _plan(staging_url, production_url, "other-v2")).enqueued == 3


def test_catalog_images_drops_blank_and_repeated_urls() -> None:
    row = {"brand": "b", "external_id": "x", "image_urls": ["u1", "", "u1", 7, "u2"], "name": "n"}
    assert [(i[2], i[3]) for i in catalog_images(row)] == [("u1", 0), ("u2", 4)]
    assert catalog_images({"brand": "b", "external_id": "x", "image_urls": None}) == []
    assert product_metadata({"name": "n"})["price"] is None
