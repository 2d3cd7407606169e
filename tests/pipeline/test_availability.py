from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from tests.pipeline import staging_rows
from unde.availability import FallbackQuery, attribute_fallback, fallback_attempts, stock_in_mall

DAY = timedelta(hours=24)
PAIRS = [("zara", "z1"), ("zara", "z2"), ("zara", "z3"), ("mango", "m1"), ("mango", "m2"), ("hm", "x")]


@pytest.fixture
async def conn(staging_url: str):  # type: ignore[no-untyped-def]
    staging_rows.load(staging_url)
    async with await psycopg.AsyncConnection.connect(staging_url) as connection:
        yield connection


async def test_latest_snapshot_in_the_mall_decides(conn: psycopg.AsyncConnection) -> None:
    found = await stock_in_mall(conn, PAIRS, "Dubai Hills Mall", DAY)

    assert set(found) == {("zara", "z1"), ("mango", "m1"), ("mango", "m2")}
    [store] = found[("zara", "z1")]
    assert (store.store_name, store.mall_name, store.sizes_in_stock) == (
        "Zara Dubai Hills", "Dubai Hills Mall", ["M", "L"])


async def test_the_48h_rollback_window_admits_older_snapshots(conn: psycopg.AsyncConnection) -> None:
    found = await stock_in_mall(conn, PAIRS, "Dubai Hills Mall", timedelta(hours=48))
    assert ("zara", "z3") in found


async def test_other_malls_and_unknown_malls(conn: psycopg.AsyncConnection) -> None:
    assert set(await stock_in_mall(conn, PAIRS, "Mall of the Emirates", DAY)) == {("zara", "z3")}
    assert await stock_in_mall(conn, PAIRS, "Nowhere Mall", DAY) == {}
    assert await stock_in_mall(conn, [], "Dubai Hills Mall", DAY) == {}


async def test_fallback_matches_type_and_colour_in_the_mall_by_price(conn: psycopg.AsyncConnection) -> None:
    result = await attribute_fallback(
        conn, FallbackQuery("outerwear", "bomber_jacket", "khaki", "Dubai Hills Mall"), DAY)

    # z2 matches type + colour but its latest snapshot is empty.
    assert [row["external_id"] for row in result.rows] == ["z1"]
    assert result.matched_on == ["type", "colour"]
    assert result.rows[0]["stores"][0]["sizes_in_stock"] == ["M", "L"]


async def test_fallback_relaxes_step_by_step(conn: psycopg.AsyncConnection) -> None:
    result = await attribute_fallback(
        conn, FallbackQuery("outerwear", "bomber_jacket", "purple", "Dubai Hills Mall"), DAY)
    assert result.matched_on == ["type"]
    assert [row["external_id"] for row in result.rows] == ["z1", "m1"]  # cheapest first

    result = await attribute_fallback(conn, FallbackQuery("outerwear", "blazer", "khaki", "Dubai Hills Mall"), DAY)
    assert result.matched_on == ["category", "colour"]
    assert [row["external_id"] for row in result.rows] == ["m2", "z1"]


async def test_fallback_without_a_mall_ignores_stock(conn: psycopg.AsyncConnection) -> None:
    result = await attribute_fallback(conn, FallbackQuery("outerwear", "bomber_jacket", "khaki"), DAY)
    assert [row["external_id"] for row in result.rows] == ["z2", "z1"]


def test_fallback_attempt_order() -> None:
    attempts = [matched for matched, _, _ in fallback_attempts(FallbackQuery("top", "shirt", "red"))]
    assert attempts == [["type", "colour"], ["type"], ["category", "colour"], ["category"]]
    assert fallback_attempts(FallbackQuery(None)) == []
