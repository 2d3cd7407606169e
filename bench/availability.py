"""Step 3.5 at the spec's scale: the pair-driven availability lookup vs the spec's query.

Data: the synthetic generator at `full` scale — 47K products, each brand in 4–6 malls,
4 snapshots a day over 3 days (≈ 2–3M `raw_availability` rows). Each request looks up 50
candidate pairs drawn from the catalog (as search would return them) for a random mall.
Baseline, in the same run: the spec's SQL (DISTINCT ON over the whole window, then join).
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import timedelta
from typing import Any

import psycopg

from bench.common import CACHE, bench_database, figure, percentile, print_table
from unde.availability import stock_in_mall
from unde.db.embedded import restart_embedded

WINDOW = timedelta(hours=24)
SEED = 7

SPEC_SQL = """
WITH latest AS (
    SELECT DISTINCT ON (brand, store_id, product_id)
        brand, store_id, product_id, sizes_in_stock, fetched_at
    FROM raw_availability
    WHERE fetched_at > now() - %(window)s::interval
    ORDER BY brand, store_id, product_id, fetched_at DESC
)
SELECT l.product_id, l.brand, rs.name AS store_name, rs.address, rs.mall_name, l.sizes_in_stock
FROM unnest(%(brands)s::text[], %(products)s::text[]) AS c(brand, product_id)
JOIN latest l ON l.brand = c.brand AND l.product_id = c.product_id
JOIN raw_stores rs ON rs.brand = l.brand AND rs.store_id = l.store_id
WHERE rs.mall_name = %(mall)s AND l.sizes_in_stock != '[]'::jsonb
"""


def seeded_staging() -> str:
    """The full-scale staging DB, seeded once and reused (marker file per seed)."""
    from unde.synthetic.seed import seed_dataset

    url = bench_database("pg-availability", "staging_full", "staging")
    marker = CACHE / f"availability-seeded-{SEED}"
    if not marker.exists():
        print("seeding the full-scale staging DB once (cached for later runs)...", flush=True)
        report = seed_dataset(url, CACHE / "availability-data", scale="full", seed=SEED, street_photos=0,
                              render_images=False)
        print(report.summary())
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            # Like the production DB (64 GB RAM): the lookup's index stays in memory.
            conn.execute("ALTER SYSTEM SET shared_buffers = '1GB'")
        restart_embedded(CACHE / "pg-availability")
        marker.touch()
    return url


def _requests(url: str, count: int) -> list[tuple[list[tuple[str, str]], str]]:
    rng = random.Random(SEED)
    with psycopg.connect(url) as conn:
        products = conn.execute("SELECT brand, external_id FROM raw_products").fetchall()
        malls = [row[0] for row in conn.execute("SELECT DISTINCT mall_name FROM raw_stores ORDER BY 1")]
    return [([tuple(p) for p in rng.sample(products, 50)], rng.choice(malls)) for _ in range(count)]


async def _ours(url: str, requests: list[tuple[list[tuple[str, str]], str]],
                warm_up: list[tuple[list[tuple[str, str]], str]]) -> tuple[list[float], int]:
    timings: list[float] = []
    rows = 0
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for pairs, mall in warm_up:  # other requests first: caches as in a running service
            await stock_in_mall(conn, pairs, mall, WINDOW)
        for pairs, mall in requests:
            started = time.perf_counter()
            found = await stock_in_mall(conn, pairs, mall, WINDOW)
            timings.append((time.perf_counter() - started) * 1000)
            rows += len(found)
    return timings, rows


def _spec(url: str, requests: list[tuple[list[tuple[str, str]], str]]) -> tuple[list[float], list[set[Any]]]:
    timings: list[float] = []
    answers = []
    with psycopg.connect(url, autocommit=True) as conn:
        for pairs, mall in requests:
            params = {"brands": [b for b, _ in pairs], "products": [p for _, p in pairs], "mall": mall,
                      "window": WINDOW}
            started = time.perf_counter()
            rows = conn.execute(SPEC_SQL, params).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
            answers.append({(row[1], row[0]) for row in rows})
    return timings, answers


def run(quick: bool) -> dict[str, dict[str, Any]]:
    url = seeded_staging()
    with psycopg.connect(url) as conn:
        total_rows = conn.execute("SELECT count(*) FROM raw_availability").fetchone()[0]  # type: ignore[index]
    drawn = _requests(url, 600 if quick else 3000)
    warm_up, requests = drawn[: len(drawn) // 3], drawn[len(drawn) // 3:]
    timings, found_rows = asyncio.run(_ours(url, requests, warm_up))
    spec_requests = requests[: 3 if quick else 10]
    spec_timings, spec_answers = _spec(url, spec_requests)
    ours_answers = [set(asyncio.run(_lookup_once(url, pairs, mall))) for pairs, mall in spec_requests]
    agree = all(a == b for a, b in zip(ours_answers, spec_answers, strict=True))
    p50, p99 = percentile(timings, 50), percentile(timings, 99)
    spec_p50 = percentile(spec_timings, 50)
    print_table("availability (50 candidate pairs, one mall)", [
        ("raw_availability rows", total_rows, ""), ("requests", len(timings), ""),
        ("pair-driven p50", p50, "ms"), ("pair-driven p99", p99, "ms"),
        ("spec query p50", spec_p50, "ms"), ("speed-up at p50", spec_p50 / p50, "x"),
        ("same answers as the spec query", agree, ""),
        ("in-stock pairs found per request", found_rows / len(timings), ""),
    ])
    if not agree:
        raise AssertionError("pair-driven lookup disagrees with the spec's query")
    return {
        "availability_rows": figure(total_rows, "rows"),
        "availability_p50_ms": figure(round(p50, 3), "ms", "spec DISTINCT ON query p50", round(spec_p50, 1)),
        "availability_p99_ms": figure(round(p99, 3), "ms"),
    }


async def _lookup_once(url: str, pairs: list[tuple[str, str]], mall: str) -> list[tuple[str, str]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return list(await stock_in_mall(conn, pairs, mall, WINDOW))


if __name__ == "__main__":
    run(quick=True)
