"""Claim with SKIP LOCKED + lease, retry with backoff, dead letters, the KEDA depth query."""

from __future__ import annotations

import asyncio
import random

import psycopg
import pytest

from unde.indexing import queue
from unde.indexing.queue import QUEUE_DEPTH_SQL, backoff_s

MODEL = "m1"


def enqueue(url: str, n: int, model: str = MODEL) -> None:
    with psycopg.connect(url) as conn:
        for i in range(n):
            conn.execute("INSERT INTO index_jobs (brand, sku_id, image_url, image_rank, model_version)"
                         " VALUES ('b', %s, %s, 0, %s)", (f"s{i}", f"http://x/{i}.jpg", model))


async def test_concurrent_claims_never_share_a_job(production_url: str) -> None:
    enqueue(production_url, 20)
    enqueue(production_url, 3, model="other")

    async def claim() -> list[int]:
        async with await psycopg.AsyncConnection.connect(production_url) as conn:
            return [j.id for j in await queue.claim(conn, MODEL, 7, lease_s=60, max_attempts=3)]

    batches = await asyncio.gather(*(claim() for _ in range(4)))
    claimed = [i for batch in batches for i in batch]
    assert len(claimed) == len(set(claimed)) == 20
    async with await psycopg.AsyncConnection.connect(production_url) as conn:
        assert await queue.claim(conn, MODEL, 7, lease_s=60, max_attempts=3) == []
        assert (await queue.status_counts(conn, MODEL))["running"] == 20


async def test_expired_lease_is_reclaimed_then_buried_after_max_attempts(production_url: str) -> None:
    enqueue(production_url, 1)
    async with await psycopg.AsyncConnection.connect(production_url, autocommit=True) as conn:
        for attempt in (1, 2):
            jobs = await queue.claim(conn, MODEL, 5, lease_s=0.05, max_attempts=2)
            assert [j.attempts for j in jobs] == [attempt]
            assert await queue.claim(conn, MODEL, 5, lease_s=0.05, max_attempts=2) == []  # leased
            await asyncio.sleep(0.1)
        assert await queue.claim(conn, MODEL, 5, lease_s=0.05, max_attempts=2) == []
        row = await (await conn.execute("SELECT status, last_error FROM index_jobs")).fetchone()
    assert row is not None and row[0] == "dead" and "lease expired on attempt 2" in row[1]


async def test_failures_back_off_then_become_dead_letters(production_url: str) -> None:
    enqueue(production_url, 1)
    async with await psycopg.AsyncConnection.connect(production_url, autocommit=True) as conn:
        [job] = await queue.claim(conn, MODEL, 1, lease_s=60, max_attempts=2)
        assert await queue.mark_failed(conn, job, "boom 1", max_attempts=2, backoff_base_s=3600) == "pending"
        assert await queue.claim(conn, MODEL, 1, lease_s=60, max_attempts=2) == []  # not due yet
        await conn.execute("UPDATE index_jobs SET run_after = now()")
        [job] = await queue.claim(conn, MODEL, 1, lease_s=60, max_attempts=2)
        assert job.attempts == 2
        assert await queue.mark_failed(conn, job, "boom 2", max_attempts=2, backoff_base_s=0) == "dead"
        row = await (await conn.execute("SELECT status, attempts, last_error FROM index_jobs")).fetchone()
        assert row == ("dead", 2, "boom 2")
        assert await queue.queue_depth(conn) == 0


async def test_permanent_failure_is_dead_at_once_and_release_returns_jobs(production_url: str) -> None:
    enqueue(production_url, 3)
    async with await psycopg.AsyncConnection.connect(production_url, autocommit=True) as conn:
        jobs = await queue.claim(conn, MODEL, 3, lease_s=60, max_attempts=5)
        assert await queue.mark_failed(conn, jobs[0], "not an image", max_attempts=5,
                                       backoff_base_s=0, permanent=True) == "dead"
        await queue.mark_done(conn, [jobs[1].id])
        await queue.release(conn, [jobs[2].id])
        counts = await queue.status_counts(conn, MODEL)
        assert counts == {"pending": 1, "running": 0, "done": 1, "dead": 1}
        [again] = await queue.claim(conn, MODEL, 3, lease_s=60, max_attempts=5)
        assert again.id == jobs[2].id and again.attempts == 1  # a release does not count


async def test_keda_depth_query_counts_waiting_and_in_flight_jobs(production_url: str) -> None:
    enqueue(production_url, 5)
    with psycopg.connect(production_url, autocommit=True) as conn:
        assert QUEUE_DEPTH_SQL.startswith("SELECT COALESCE(count(*), 0) FROM index_jobs WHERE")
        assert conn.execute(QUEUE_DEPTH_SQL).fetchone() == (5,)
        conn.execute("UPDATE index_jobs SET status = 'running', lease_until = now() WHERE id <= 2")
        conn.execute("UPDATE index_jobs SET status = 'done' WHERE id = 3")
        conn.execute("UPDATE index_jobs SET status = 'dead' WHERE id = 4")
        assert conn.execute(QUEUE_DEPTH_SQL).fetchone() == (3,)
        conn.execute("DELETE FROM index_jobs")
        assert conn.execute(QUEUE_DEPTH_SQL).fetchone() == (0,)


@pytest.mark.parametrize("attempt", [1, 2, 5])
def test_backoff_grows_exponentially_with_bounded_jitter(attempt: int) -> None:
    rng = random.Random(attempt)
    delays = [backoff_s(attempt, 5.0, rng) for _ in range(200)]
    centre = 5.0 * 2 ** (attempt - 1)
    assert all(0.5 * centre <= d < 1.5 * centre for d in delays)
    assert max(delays) - min(delays) > 0.5 * centre  # jitter spreads retries
    assert backoff_s(40, 5.0) <= queue.MAX_BACKOFF_S
