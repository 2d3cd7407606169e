"""The indexing queue in `index_jobs`: claim, complete, retry with backoff, dead-letter.

A job is one catalog image for one model version. Consumers claim ready jobs with
``FOR UPDATE SKIP LOCKED`` (no two consumers get the same job) and hold them for a lease
(`lease_until`); a consumer that dies leaves its jobs `running` with a lease that expires, and
an expired lease is claimable again. Every claim counts as an attempt, so an image that kills
its consumer every time still ends as a dead letter after `max_attempts`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

#: The one query KEDA's postgresql trigger runs: jobs waiting or in flight.
QUEUE_DEPTH_SQL = (
    "SELECT COALESCE(count(*), 0) FROM index_jobs WHERE status IN ('pending', 'running')"
)

#: Longest wait between two attempts of one job.
MAX_BACKOFF_S = 3600.0

_JOB_COLUMNS = "id, brand, sku_id, image_url, image_rank, model_version, metadata, attempts"

_CLAIM_SQL = f"""
WITH picked AS (
    SELECT id FROM index_jobs
    WHERE model_version = %(model_version)s
      AND attempts < %(max_attempts)s
      AND ((status = 'pending' AND run_after <= now())
           OR (status = 'running' AND lease_until < now()))
    ORDER BY run_after, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE index_jobs AS j
SET status = 'running', attempts = j.attempts + 1, updated_at = now(),
    lease_until = now() + make_interval(secs => %(lease_s)s)
FROM picked WHERE j.id = picked.id
RETURNING {", ".join("j." + c for c in _JOB_COLUMNS.split(", "))}
"""

# A job whose lease ran out on its last allowed attempt will not be claimed again: bury it.
_BURY_EXPIRED_SQL = """
UPDATE index_jobs
SET status = 'dead', lease_until = NULL, updated_at = now(),
    last_error = coalesce(last_error || '; ', '') || 'lease expired on attempt ' || attempts
WHERE status = 'running' AND lease_until < now() AND attempts >= %(max_attempts)s
  AND model_version = %(model_version)s
"""

_DONE_SQL = """
UPDATE index_jobs SET status = 'done', lease_until = NULL, last_error = NULL, updated_at = now()
WHERE id = ANY(%s) AND status = 'running'
"""

_FAIL_SQL = """
UPDATE index_jobs
SET status = CASE WHEN %(dead)s OR attempts >= %(max_attempts)s THEN 'dead' ELSE 'pending' END,
    run_after = now() + make_interval(secs => %(delay_s)s),
    lease_until = NULL, last_error = %(error)s, updated_at = now()
WHERE id = %(id)s AND status = 'running'
RETURNING status
"""

_RELEASE_SQL = """
UPDATE index_jobs
SET status = 'pending', attempts = greatest(attempts - 1, 0), lease_until = NULL, updated_at = now()
WHERE id = ANY(%s) AND status = 'running'
"""


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed catalog image to embed."""

    id: int
    brand: str
    sku_id: str
    image_url: str
    image_rank: int
    model_version: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    attempts: int = 1


def backoff_s(attempt: int, base_s: float, rng: random.Random | None = None) -> float:
    """Delay before the next try after `attempt` failed: base·2^(attempt−1), jitter ×[0.5, 1.5)."""
    rng = rng or random.Random()
    exponential = base_s * 2.0 ** max(0, attempt - 1)
    return min(MAX_BACKOFF_S, exponential * (0.5 + rng.random()))


async def claim(conn: AsyncConnection[Any], model_version: str, limit: int, *, lease_s: float,
                max_attempts: int) -> list[Job]:
    """Claim up to `limit` ready jobs (pending and due, or with an expired lease)."""
    params = {"model_version": model_version, "max_attempts": max_attempts,
              "limit": limit, "lease_s": lease_s}
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_BURY_EXPIRED_SQL, params)
        await cur.execute(_CLAIM_SQL, params)
        rows = await cur.fetchall()
    jobs = [Job(id=r["id"], brand=r["brand"], sku_id=r["sku_id"], image_url=r["image_url"],
                image_rank=r["image_rank"], model_version=r["model_version"],
                metadata=r["metadata"] or {}, attempts=r["attempts"]) for r in rows]
    jobs.sort(key=lambda job: job.id)
    return jobs


async def mark_done(conn: AsyncConnection[Any], job_ids: Sequence[int]) -> None:
    """Mark jobs done (call inside the transaction that wrote their embeddings)."""
    if job_ids:
        await conn.execute(_DONE_SQL, (list(job_ids),))


async def mark_failed(conn: AsyncConnection[Any], job: Job, error: str, *, max_attempts: int,
                      backoff_base_s: float, permanent: bool = False) -> str:
    """Schedule a retry with backoff, or bury the job as 'dead'; returns the new status."""
    params = {"id": job.id, "error": error[:2000], "max_attempts": max_attempts,
              "dead": permanent, "delay_s": backoff_s(job.attempts, backoff_base_s)}
    cur = await conn.execute(_FAIL_SQL, params)
    row = await cur.fetchone()
    return str(row[0]) if row else "gone"


async def release(conn: AsyncConnection[Any], job_ids: Sequence[int]) -> None:
    """Hand claimed-but-unstarted jobs back (graceful shutdown); the attempt is not counted."""
    if job_ids:
        await conn.execute(_RELEASE_SQL, (list(job_ids),))


async def queue_depth(conn: AsyncConnection[Any]) -> int:
    """Jobs waiting or in flight (what KEDA scales on)."""
    row = await (await conn.execute(QUEUE_DEPTH_SQL)).fetchone()
    return int(row[0]) if row else 0


async def status_counts(conn: AsyncConnection[Any], model_version: str | None = None) -> dict[str, int]:
    """Jobs per status, for one model version or all."""
    where, params = ("WHERE model_version = %s", (model_version,)) if model_version else ("", ())
    cur = await conn.execute(f"SELECT status, count(*) FROM index_jobs {where} GROUP BY status", params)
    counts = {"pending": 0, "running": 0, "done": 0, "dead": 0}
    counts.update({row[0]: int(row[1]) for row in await cur.fetchall()})
    return counts
