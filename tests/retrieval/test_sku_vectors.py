"""`unde.retrieval.sku_vectors`: the SKU-mean rows and the IVFFlat index's upkeep."""

from __future__ import annotations

import asyncio

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector, register_vector_async

from tests.retrieval.conftest import MODEL, Catalog, queries
from unde.db.pgvector import as_array
from unde.retrieval.search import SearchTuning, search_conn
from unde.retrieval.sku_vectors import (
    INDEX,
    ensure_skus,
    maintain_index,
    needs_rebuild,
    upsert_skus,
    wanted_lists,
)


def _means(url: str) -> dict[tuple[str, str], tuple[np.ndarray, int]]:
    with psycopg.connect(url) as conn:
        register_vector(conn)
        rows = conn.execute("SELECT brand, sku_id, embedding, photos FROM sku_embeddings WHERE model_version = %s",
                            (MODEL,)).fetchall()
    return {(b, s): (as_array(v), p) for b, s, v, p in rows}


def test_each_sku_row_is_the_mean_of_its_photos(loaded_url: str, catalog: Catalog) -> None:
    means = _means(loaded_url)
    keys = set(zip(catalog.brands, catalog.skus, strict=True))
    assert set(means) == keys
    for key in list(keys)[:40]:
        rows = [i for i, k in enumerate(zip(catalog.brands, catalog.skus, strict=True)) if k == key]
        vector, photos = means[key]
        assert photos == len(rows)
        assert np.allclose(vector, catalog.vectors[rows].mean(axis=0), atol=1e-5)


async def test_upsert_follows_new_and_deleted_photos(search_clone_url: str, catalog: Catalog) -> None:
    brand, sku = catalog.brands[0], catalog.skus[0]
    async with await psycopg.AsyncConnection.connect(search_clone_url, autocommit=True) as conn:
        await register_vector_async(conn)
        extra = np.full(512, 0.5, dtype=np.float32)
        async with conn.transaction():
            await conn.execute("INSERT INTO sku_image_embeddings (sku_id, brand, image_url, image_rank, image_hash,"
                               " embedding, model_version) VALUES (%s, %s, 'u', 6, 'new', %s, %s)",
                               (sku, brand, extra, MODEL))
            assert await upsert_skus(conn, MODEL, [(brand, sku)]) == 1
        vector, photos = _means(search_clone_url)[(brand, sku)]
        rows = [i for i, k in enumerate(zip(catalog.brands, catalog.skus, strict=True)) if k == (brand, sku)]
        assert photos == len(rows) + 1
        assert np.allclose(vector, np.vstack([catalog.vectors[rows], extra]).mean(axis=0), atol=1e-5)
        async with conn.transaction():
            await conn.execute("DELETE FROM sku_image_embeddings WHERE brand = %s AND sku_id = %s", (brand, sku))
            assert await upsert_skus(conn, MODEL, [(brand, sku)]) == 0
        assert (brand, sku) not in _means(search_clone_url)


async def test_backfill_repairs_missing_stale_and_orphaned_rows(search_clone_url: str, catalog: Catalog) -> None:
    with psycopg.connect(search_clone_url, autocommit=True) as conn:
        conn.execute("DELETE FROM sku_embeddings WHERE sku_id IN ('S1', 'S2')")  # missing
        conn.execute("UPDATE sku_embeddings SET photos = photos + 3 WHERE sku_id = 'S3'")  # stale
        conn.execute("DELETE FROM sku_image_embeddings WHERE sku_id = 'S4'")  # orphaned SKU row
    async with await psycopg.AsyncConnection.connect(search_clone_url, autocommit=True) as conn:
        assert await ensure_skus(conn, MODEL) == 4
        assert await ensure_skus(conn, MODEL) == 0
    means = _means(search_clone_url)
    assert {k[1] for k in means} >= {"S1", "S2", "S3"} and "S4" not in {k[1] for k in means}
    assert means[next(k for k in means if k[1] == "S3")][1] == catalog.skus.count("S3")


def test_lists_follow_the_rows() -> None:
    assert [wanted_lists(n) for n in (0, 150, 47_000, 10**8)] == [1, 1, 235, 32_768]
    assert needs_rebuild(1, 47_000) and needs_rebuild(235, 200_000) and needs_rebuild(235, 20_000)
    assert not needs_rebuild(235, 47_000) and not needs_rebuild(235, 80_000)


async def _lists(conn: psycopg.AsyncConnection) -> int:
    row = await (await conn.execute(
        "SELECT option_value::int FROM pg_class, pg_options_to_table(reloptions) "
        "WHERE relname = %s AND option_name = 'lists'", (INDEX,))).fetchone()
    assert row is not None
    return int(row[0])


async def test_the_index_is_rebuilt_concurrently_and_searches_answer_meanwhile(
        search_clone_url: str, catalog: Catalog) -> None:
    """The loaded catalog's index has 24 lists for 680 + 80 SKU rows (wanted: 4): a rebuild.
    A transaction holding an old snapshot keeps REINDEX CONCURRENTLY waiting between its phases;
    searches during the wait still answer in full, and the rebuilt index serves afterwards."""
    urls = search_clone_url
    async with (await psycopg.AsyncConnection.connect(urls, autocommit=True) as blocker,
                await psycopg.AsyncConnection.connect(urls, autocommit=True) as maintainer,
                await psycopg.AsyncConnection.connect(urls, autocommit=True) as searcher):
        await register_vector_async(searcher)
        await blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await blocker.execute("SELECT count(*) FROM index_jobs")  # takes the snapshot
        rebuild = asyncio.create_task(maintain_index(maintainer))
        waited = 0
        while waited < 100 and not await _reindex_running(searcher):
            await asyncio.sleep(0.05)
            waited += 1
        assert not rebuild.done()
        tuning = SearchTuning(exact_rows=0)
        for q in queries(catalog, 5, seed=21):
            hits = await search_conn(searcher, q, model_version=MODEL, k=50, brands=None, tuning=tuning)
            assert len(hits) == 50
        await blocker.execute("COMMIT")
        report = await asyncio.wait_for(rebuild, 60)
        assert report.rebuilt and report.lists == wanted_lists(report.rows) == await _lists(searcher)
        hits = await search_conn(searcher, catalog.vectors[7], model_version=MODEL, k=50, brands=None, tuning=tuning)
        assert (hits[0].brand, hits[0].sku_id) == (catalog.brands[7], catalog.skus[7])
        assert not (await maintain_index(maintainer)).rebuilt  # in step now
        valid = await (await searcher.execute(
            "SELECT count(*) FROM pg_index JOIN pg_class ON indexrelid = oid "
            "WHERE starts_with(relname::text, %s) AND indisvalid", (INDEX,))).fetchone()
        assert valid == (1,)


async def _reindex_running(conn: psycopg.AsyncConnection) -> bool:
    row = await (await conn.execute(
        "SELECT count(*) FROM pg_stat_progress_create_index WHERE command = 'REINDEX CONCURRENTLY'")).fetchone()
    return bool(row and row[0])


async def test_an_interrupted_rebuild_leaves_nothing_behind(search_clone_url: str) -> None:
    """A REINDEX CONCURRENTLY cancelled midway leaves an invalid *_ccnew copy that every insert
    maintains; the next maintenance drops it."""
    async with (await psycopg.AsyncConnection.connect(search_clone_url, autocommit=True) as blocker,
                await psycopg.AsyncConnection.connect(search_clone_url, autocommit=True) as victim):
        await blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await blocker.execute("SELECT count(*) FROM index_jobs")
        await victim.execute("SET statement_timeout = '1s'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            await victim.execute(f"REINDEX INDEX CONCURRENTLY {INDEX}")
        await blocker.execute("COMMIT")
        count = "SELECT count(*) FROM pg_class WHERE starts_with(relname::text, %s)"
        assert await (await victim.execute(count, (f"{INDEX}_ccnew",))).fetchone() == (1,)
        await victim.execute("RESET statement_timeout")
        await maintain_index(victim)
        assert await (await victim.execute(count, (f"{INDEX}_ccnew",))).fetchone() == (0,)


async def test_a_failed_rebuild_keeps_the_built_lists_and_is_retried(search_clone_url: str) -> None:
    """The rebuild is cancelled midway (statement timeout while an old snapshot holds it): the
    reloption goes back to the lists the index was built with, nothing is left on the
    connection, and the next maintenance drops the invalid copy and rebuilds."""
    async with (await psycopg.AsyncConnection.connect(search_clone_url, autocommit=True) as blocker,
                await psycopg.AsyncConnection.connect(search_clone_url, autocommit=True) as conn):
        before = await _lists(conn)
        await blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await blocker.execute("SELECT count(*) FROM index_jobs")
        await conn.execute("SET statement_timeout = '1s'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            await maintain_index(conn)
        await blocker.execute("COMMIT")
        assert await _lists(conn) == before
        assert await (await conn.execute("SHOW maintenance_work_mem")).fetchone() != ("512MB",)
        await conn.execute("RESET statement_timeout")
        report = await maintain_index(conn)
        assert report.rebuilt and await _lists(conn) == report.lists
        leftover = await (await conn.execute(
            "SELECT count(*) FROM pg_class WHERE starts_with(relname::text, %s)", (f"{INDEX}_ccnew",))).fetchone()
        assert leftover == (0,)
