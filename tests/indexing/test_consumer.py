"""The consumer: every image embedded exactly once, known hashes cost no inference, crashes
lose and duplicate nothing, failures retry then dead-letter."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg_pool import AsyncConnectionPool

from unde.db.pgvector import as_array
from unde.indexing.planner import plan_missing

from .conftest import CountingEmbedder, ImageCdn, add_product, jpeg, make_consumer, seed_catalog

MODEL = CountingEmbedder.model_version


async def plan(staging_url: str, production_url: str) -> int:
    async with (await psycopg.AsyncConnection.connect(staging_url) as staging,
                await psycopg.AsyncConnection.connect(production_url) as production):
        return (await plan_missing(staging, production, MODEL)).enqueued


def embedded_rows(production_url: str) -> list[tuple[str, str, str, int]]:
    with psycopg.connect(production_url) as conn:
        return conn.execute("SELECT brand, sku_id, image_url, count(*)::int FROM sku_image_embeddings "
                            "GROUP BY brand, sku_id, image_url ORDER BY 1, 2, 3").fetchall()


def statuses(production_url: str) -> dict[str, int]:
    with psycopg.connect(production_url) as conn:
        return dict(conn.execute("SELECT status, count(*)::int FROM index_jobs GROUP BY status").fetchall())


async def test_plan_then_consume_embeds_every_image_once(
        staging_url: str, production_url: str, production_pool: AsyncConnectionPool,
        http_client: httpx.AsyncClient, cdn: ImageCdn) -> None:
    images = seed_catalog(staging_url, cdn, products=5, photos=3)
    assert await plan(staging_url, production_url) == images
    embedder = CountingEmbedder()
    counts = await make_consumer(production_pool, embedder, http_client, cdn).run()
    assert (counts.claimed, counts.inferred, counts.written, counts.dead) == (images, images, images, 0)
    assert embedder.images == images and embedder.calls == counts.batches == 4  # 15 jobs / batch 4
    rows = embedded_rows(production_url)
    assert len(rows) == images and {r[3] for r in rows} == {1}
    assert statuses(production_url) == {"done": images}
    with psycopg.connect(production_url) as conn:
        norm, metadata = conn.execute(
            "SELECT vector_norm(embedding), metadata FROM sku_image_embeddings LIMIT 1").fetchone()
    assert abs(norm - 1.0) < 1e-5 and metadata["name"].startswith("Shirt ")
    # A re-run finds nothing: no claims, no fetches, no inference.
    hits_before = sum(cdn.hits.values())
    assert await plan(staging_url, production_url) == 0
    again = await make_consumer(production_pool, embedder, http_client, cdn).run()
    assert again.claimed == 0 and embedder.images == images and sum(cdn.hits.values()) == hits_before


async def test_known_hashes_are_reused_without_inference(
        staging_url: str, production_url: str, production_pool: AsyncConnectionPool,
        http_client: httpx.AsyncClient, cdn: ImageCdn) -> None:
    shared = jpeg((200, 30, 30), stripe=4)
    add_product(staging_url, cdn, "aurelle", "FIRST", [shared])
    await plan(staging_url, production_url)
    embedder = CountingEmbedder()
    await make_consumer(production_pool, embedder, http_client, cdn).run()
    assert embedder.images == 1
    # The same bytes under another brand/SKU/URL, twice in one batch: no inference at all.
    add_product(staging_url, cdn, "sable", "COPY", [shared, shared],
                urls=[cdn.url("mirror/a.jpg"), cdn.url("mirror/b.jpg")])
    cdn.files["mirror/a.jpg"] = cdn.files["mirror/b.jpg"] = shared
    assert await plan(staging_url, production_url) == 2
    counts = await make_consumer(production_pool, embedder, http_client, cdn).run()
    assert embedder.images == 1 and embedder.calls == 1
    assert counts.reused == 2 and counts.inferred == 0
    with psycopg.connect(production_url) as conn:
        vectors = conn.execute("SELECT DISTINCT embedding::text FROM sku_image_embeddings").fetchall()
        copies = conn.execute("SELECT count(*) FROM sku_image_embeddings WHERE sku_id = 'COPY'").fetchone()
    assert len(vectors) == 1 and copies == (1,)  # same SKU + same hash = one row (unique key)
    assert statuses(production_url) == {"done": 3}


FAIL_ONCE_ON_DONE = """
CREATE TABLE crash_switch (armed boolean);
INSERT INTO crash_switch VALUES (true);
CREATE FUNCTION crash_on_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'done' AND (SELECT armed FROM crash_switch) THEN
        RAISE EXCEPTION 'consumer killed before commit';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER crash_on_done BEFORE UPDATE ON index_jobs FOR EACH ROW EXECUTE FUNCTION crash_on_done();
"""


async def test_consumer_killed_between_insert_and_commit_loses_and_duplicates_nothing(
        staging_url: str, production_url: str, production_pool: AsyncConnectionPool,
        http_client: httpx.AsyncClient, cdn: ImageCdn) -> None:
    images = seed_catalog(staging_url, cdn, products=4, photos=2)
    await plan(staging_url, production_url)
    with psycopg.connect(production_url, autocommit=True) as conn:
        conn.execute(FAIL_ONCE_ON_DONE)
    embedder = CountingEmbedder()
    crashing = make_consumer(production_pool, embedder, http_client, cdn, lease_s=0.2)
    with pytest.raises(psycopg.errors.RaiseException):
        await crashing.run()  # the INSERT ran, then the transaction died
    assert embedder.images >= 4 and embedded_rows(production_url) == []
    assert statuses(production_url).get("done", 0) == 0
    with psycopg.connect(production_url, autocommit=True) as conn:
        conn.execute("UPDATE crash_switch SET armed = false")
    await asyncio.sleep(0.3)  # the dead consumer's leases expire
    counts = await make_consumer(production_pool, embedder, http_client, cdn).run()
    rows = embedded_rows(production_url)
    assert len(rows) == images and {r[3] for r in rows} == {1}
    assert statuses(production_url) == {"done": images} and counts.dead == 0


async def test_jobs_of_a_consumer_that_vanished_are_reclaimed_after_the_lease(
        staging_url: str, production_url: str, production_pool: AsyncConnectionPool,
        http_client: httpx.AsyncClient, cdn: ImageCdn) -> None:
    from unde.indexing import queue

    images = seed_catalog(staging_url, cdn, products=3, photos=2)
    await plan(staging_url, production_url)
    async with production_pool.connection() as conn:
        grabbed = await queue.claim(conn, MODEL, 4, lease_s=0.2, max_attempts=3)  # then "dies"
    assert len(grabbed) == 4
    embedder = CountingEmbedder()
    first = await make_consumer(production_pool, embedder, http_client, cdn).run()
    assert first.claimed == images - 4  # the leased ones are not touched
    await asyncio.sleep(0.3)
    second = await make_consumer(production_pool, embedder, http_client, cdn).run()
    assert second.claimed == 4
    rows = embedded_rows(production_url)
    assert len(rows) == images and {r[3] for r in rows} == {1}


async def test_failures_retry_with_backoff_and_bad_images_become_dead_letters(
        staging_url: str, production_url: str, production_pool: AsyncConnectionPool,
        http_client: httpx.AsyncClient, cdn: ImageCdn) -> None:
    add_product(staging_url, cdn, "kestrel", "FLAKY", [jpeg((10, 200, 10))])
    cdn.fail_times["kestrel/FLAKY/0.jpg"] = 1            # one 503, then fine
    add_product(staging_url, cdn, "kestrel", "GONE", [jpeg((1, 1, 1))])
    cdn.fail_times["kestrel/GONE/0.jpg"] = 99            # never recovers
    add_product(staging_url, cdn, "kestrel", "TEXT", [], urls=[cdn.url("notes.txt")])
    cdn.files["notes.txt"] = b"this is not an image at all"
    add_product(staging_url, cdn, "kestrel", "EVIL", [], urls=["http://169.254.169.254/latest/meta-data"])
    await plan(staging_url, production_url)
    embedder = CountingEmbedder()
    consumer = make_consumer(production_pool, embedder, http_client, cdn, max_attempts=3)
    total = 0
    for _ in range(4):  # backoff base 0: each run retries what is due
        total += (await consumer.run()).claimed
    with psycopg.connect(production_url) as conn:
        jobs = {r[0]: r[1:] for r in conn.execute(
            "SELECT sku_id, status, attempts, last_error FROM index_jobs").fetchall()}
    assert jobs["FLAKY"][:2] == ("done", 2)
    assert jobs["GONE"][:2] == ("dead", 3) and "503" in jobs["GONE"][2]
    assert jobs["TEXT"][:2] == ("dead", 1) and "not a recognisable image" in jobs["TEXT"][2]
    assert jobs["EVIL"][:2] == ("dead", 1) and "url_not_allowed" in jobs["EVIL"][2]
    assert [r[1] for r in embedded_rows(production_url)] == ["FLAKY"]
    assert embedder.images == 1 and total == 2 + 3 + 1 + 1  # claims: FLAKY, GONE, TEXT, EVIL


async def test_max_jobs_bounds_a_run_and_the_prefetched_batch_is_released(
        staging_url: str, production_url: str, production_pool: AsyncConnectionPool,
        http_client: httpx.AsyncClient, cdn: ImageCdn) -> None:
    seed_catalog(staging_url, cdn, products=5, photos=2)
    await plan(staging_url, production_url)
    embedder = CountingEmbedder()
    stop = asyncio.Event()
    stop.set()  # as after SIGTERM: finish the batch in hand, start nothing new
    counts = await make_consumer(production_pool, embedder, http_client, cdn).run(stop=stop)
    assert counts.claimed == 4
    counts = await make_consumer(production_pool, embedder, http_client, cdn).run(max_jobs=5)
    assert counts.claimed == 5
    assert statuses(production_url) == {"done": 9, "pending": 1}
    vectors = np.asarray(embedded_rows(production_url))
    assert len(vectors) == 9


async def test_the_consumer_writes_each_skus_mean_with_its_photos(
        staging_url: str, production_url: str, production_pool: AsyncConnectionPool,
        http_client: httpx.AsyncClient, cdn: ImageCdn) -> None:
    """Every batch recomputes the SKU means of the SKUs it wrote photos for, in the same
    transaction: a SKU whose photos arrive in two runs ends with the mean of both."""
    seed_catalog(staging_url, cdn, products=5, photos=3)
    await plan(staging_url, production_url)
    embedder = CountingEmbedder()
    await make_consumer(production_pool, embedder, http_client, cdn).run()
    add_product(staging_url, cdn, "brand-late", "LATE-1", [jpeg((200, 30, 30)), jpeg((20, 30, 200), stripe=4)])
    assert await plan(staging_url, production_url) == 2
    first = await make_consumer(production_pool, embedder, http_client, cdn).run(max_jobs=1)
    assert first.written == 1
    with psycopg.connect(production_url) as conn:
        assert conn.execute("SELECT photos FROM sku_embeddings WHERE sku_id = 'LATE-1'").fetchone() == (1,)
    await make_consumer(production_pool, embedder, http_client, cdn).run()
    with psycopg.connect(production_url) as conn:
        register_vector(conn)
        late = conn.execute("SELECT embedding FROM sku_image_embeddings WHERE sku_id = 'LATE-1'").fetchall()
        sku = conn.execute("SELECT embedding, photos FROM sku_embeddings WHERE sku_id = 'LATE-1'").fetchone()
        skus = conn.execute("SELECT count(*), sum(photos) FROM sku_embeddings").fetchone()
    assert len(late) == 2 and sku is not None and sku[1] == 2 and skus == (6, 17)
    assert np.allclose(as_array(sku[0]), np.stack([as_array(r[0]) for r in late]).mean(axis=0), atol=1e-6)
