"""Per-brand partial HNSW indexes: created once, idempotent under races, rebuilt when a builder
died, and created by the indexer's consumer before a new brand's rows are written."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg_pool import AsyncConnectionPool

from tests.indexing.conftest import (  # fixtures shared with the indexer's tests
    CountingEmbedder,
    ImageCdn,
    cdn,
    http_client,
    make_consumer,
    production_pool,
    seed_catalog,
)
from unde.indexing.planner import plan_missing
from unde.retrieval.brand_index import (
    PREFIX,
    brand_index_name,
    ensure_brand_index,
    ensure_brand_index_async,
    valid_brand_indexes,
)

from .conftest import copy_rows, units

__all__ = ["cdn", "http_client", "production_pool"]  # imported fixtures, used by name

ODD_BRAND = "O'Neill; DROP TABLE x -- ⛵"


def _index_state(conn: psycopg.Connection, name: str) -> tuple[bool, str] | None:
    row = conn.execute("SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index AS i "
                       "JOIN pg_class AS c ON c.oid = i.indexrelid WHERE c.relname = %s", (name,)).fetchone()
    return None if row is None else (bool(row[0]), str(row[1]))


def test_names_are_stable_distinct_and_short() -> None:
    name = brand_index_name(ODD_BRAND, "m1")
    assert name == brand_index_name(ODD_BRAND, "m1") and name.startswith(PREFIX)
    assert len(name.encode()) <= 63 and name.isascii()
    assert len({brand_index_name(b, v) for b in ("a", "b", ODD_BRAND) for v in ("m1", "m2")}) == 6


def test_ensure_brand_index_is_idempotent_and_matches_the_brand(production_url: str) -> None:
    rng = np.random.default_rng(0)
    with psycopg.connect(production_url, autocommit=True) as conn:
        register_vector(conn)
        copy_rows(conn, units(rng, 30), [ODD_BRAND] * 30, [f"S{i}" for i in range(30)], model="m1")
        name = brand_index_name(ODD_BRAND, "m1")
        assert ensure_brand_index(conn, ODD_BRAND, "m1") is True
        assert ensure_brand_index(conn, ODD_BRAND, "m1") is False
        state = _index_state(conn, name)
        assert state is not None and state[0]
        assert "USING hnsw" in state[1] and "O''Neill" in state[1] and "'m1'" in state[1]
        assert valid_brand_indexes(conn) == {name}
        # the statement timeout of the session is back to what it was
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        # a query with the brand and model version as literals can use it (30 rows: the
        # planner would rather scan and sort them, so that is turned off)
        with conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute("SET LOCAL enable_bitmapscan = off")
            conn.execute("SET LOCAL enable_sort = off")
            plan = conn.execute(
                "EXPLAIN SELECT id FROM sku_image_embeddings WHERE brand = %s AND model_version = 'm1' "
                "ORDER BY embedding <=> %s LIMIT 5", (ODD_BRAND, units(rng, 1)[0])).fetchall()
        assert any(name in line[0] for line in plan), plan
    with psycopg.connect(production_url) as conn, pytest.raises(ValueError):
        ensure_brand_index(conn, "other", "m1")  # CONCURRENTLY needs autocommit


def test_racing_builders_create_one_index(production_url: str) -> None:
    results: list[bool] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            with psycopg.connect(production_url, autocommit=True) as conn:
                results.append(ensure_brand_index(conn, "racer", "m1"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and sorted(results) == [False, False, True]
    with psycopg.connect(production_url) as conn:
        assert valid_brand_indexes(conn) == {brand_index_name("racer", "m1")}


def test_an_invalid_index_left_by_a_dead_builder_is_rebuilt(production_url: str) -> None:
    name = brand_index_name("phoenix", "m1")
    with psycopg.connect(production_url, autocommit=True) as conn:
        assert ensure_brand_index(conn, "phoenix", "m1") is True
        # what a CREATE INDEX CONCURRENTLY killed half-way leaves behind
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", (name,))
        assert valid_brand_indexes(conn) == set()
        assert ensure_brand_index(conn, "phoenix", "m1") is True
        state = _index_state(conn, name)
        assert state is not None and state[0]


async def test_async_twin_is_idempotent(production_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(production_url, autocommit=True) as conn:
        assert await ensure_brand_index_async(conn, "asyncbrand", "m1") is True
        assert await ensure_brand_index_async(conn, "asyncbrand", "m1") is False


async def test_consumer_creates_the_index_of_each_new_brand(
        staging_url: str, production_url: str, production_pool: AsyncConnectionPool,
        http_client: httpx.AsyncClient, cdn: ImageCdn) -> None:
    seed_catalog(staging_url, cdn, products=4, photos=2)
    model = CountingEmbedder.model_version
    async with (await psycopg.AsyncConnection.connect(staging_url) as staging,
                await psycopg.AsyncConnection.connect(production_url) as production):
        await plan_missing(staging, production, model)
    counts = await make_consumer(production_pool, CountingEmbedder(), http_client, cdn).run()
    assert counts.written == 8
    with psycopg.connect(production_url) as conn:
        assert valid_brand_indexes(conn) == {brand_index_name("aurelle", model),
                                             brand_index_name("northline", model)}


async def test_search_indexes_follow_brand_growth(production_url: str) -> None:
    from unde.retrieval.brand_index import ensure_search_indexes, shard_index_name

    rng = np.random.default_rng(5)
    with psycopg.connect(production_url, autocommit=True) as conn:
        register_vector(conn)
        copy_rows(conn, units(rng, 130), ["big"] * 120 + ["small"] * 10,
                  [f"s{i}" for i in range(130)], model="m1")
    async with await psycopg.AsyncConnection.connect(production_url, autocommit=True) as conn:
        built = await ensure_search_indexes(conn, "m1", shard_rows=50)
        again = await ensure_search_indexes(conn, "m1", shard_rows=50)
    with psycopg.connect(production_url) as conn:
        valid = valid_brand_indexes(conn)
    # "big" (120 rows > 2 × 50) is split in 4 shards besides its own index; "small" is not split.
    expected = {brand_index_name("big", "m1"), brand_index_name("small", "m1"),
                *(shard_index_name("big", "m1", i, 4) for i in range(4))}
    assert expected <= valid
    assert built == 6 and again == 0
