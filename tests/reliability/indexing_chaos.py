"""Indexing under crashes: queue consumers (`python -m unde.indexing.worker`) SIGKILLed at random
points while they drain the queue, and started again; afterwards every catalog image is
embedded exactly once — one row per (brand, sku_id, image_hash, model_version), as many rows
as catalog images, and no job dead or stuck."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.reliability.report import Row
from tests.reliability.stack import ReliabilityStack, fresh_databases
from unde import devstack
from unde.db.embedded import DatabaseUrls
from unde.indexing.planner import PlanReport
from unde.settings import REPO_ROOT, IndexerSettings, load_settings

LEASE_S = 3.0


@dataclass
class ChaosResult:
    plan: PlanReport
    kills: int
    rows: int
    distinct_keys: int
    duplicate_keys: int
    jobs: dict[str, int]
    wall_s: float
    problems: list[str] = field(default_factory=list)

    def row(self) -> Row:
        missing = max(0, self.plan.images - self.distinct_keys)
        return Row(f"indexing: {self.kills} consumers SIGKILLed mid-batch", self.plan.images, self.distinct_keys,
                   0, self.jobs.get("dead", 0), missing, None, None, self.problems)


def worker_env(stack: ReliabilityStack, urls: DatabaseUrls) -> dict[str, str]:
    return {**os.environ, "PRODUCTION_DB_URL": urls.production, "STAGING_DB_URL": urls.staging,
            "DATA_DIR": str(stack.config.data_dir), "PYTHONPATH": str(REPO_ROOT),
            "ALLOWED_IMAGE_HOSTS": stack.url("image_server").removeprefix("http://"),
            "INDEX_LEASE_S": str(LEASE_S), "INDEX_BATCH_SIZE": "8", "INDEX_POLL_INTERVAL_S": "0.3",
            "INDEX_BACKOFF_BASE_S": "0.5", "INDEX_MAX_ATTEMPTS": "8", "LOG_LEVEL": "WARNING"}


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "unde.indexing.worker", "--idle-exit-s", str(LEASE_S * 3)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                start_new_session=True)


async def plan(urls: DatabaseUrls, data_dir: Path) -> PlanReport:
    from unde.indexing.service import open_service

    settings = load_settings(IndexerSettings, production_db_url=urls.production, staging_db_url=urls.staging,
                             data_dir=data_dir)
    service = await open_service(settings, urls=urls)
    try:
        return await service.plan()
    finally:
        await service.close()


def job_counts(production_url: str) -> dict[str, int]:
    with psycopg.connect(production_url) as conn:
        return {row[0]: int(row[1]) for row in conn.execute("SELECT status, count(*) FROM index_jobs GROUP BY 1")}


def run_indexing_chaos(stack: ReliabilityStack, workers: int = 2, kills: int = 4, budget_s: float = 240.0,
                       seed: int = 11) -> ChaosResult:
    """Plan into a fresh production DB, drain it with `workers` consumers, SIGKILL one at a random
    moment `kills` times (restarting it), wait for the queue to empty, count rows."""
    rng = random.Random(seed)
    production = fresh_databases(stack.config.admin_url, f"{stack.config.db_prefix}_chaos").production
    urls = DatabaseUrls(production, stack.urls.staging)
    report = asyncio.run(plan(urls, stack.config.data_dir))
    env = worker_env(stack, urls)
    logs = devstack.state_dir(stack.config.data_dir) / "logs"
    started = time.monotonic()
    procs = [start_worker(env, logs / f"worker-{i}.log") for i in range(workers)]
    done_kills = 0
    try:
        while time.monotonic() - started < budget_s:
            time.sleep(rng.uniform(0.5, 3.0))
            counts = job_counts(production)
            if counts.get("pending", 0) + counts.get("running", 0) == 0:
                break
            if done_kills < kills:
                victim = rng.randrange(workers)
                os.killpg(procs[victim].pid, signal.SIGKILL)
                procs[victim].wait()
                procs[victim] = start_worker(env, logs / f"worker-{victim}.log")
                done_kills += 1
            elif all(p.poll() is not None for p in procs):
                procs = [start_worker(env, logs / f"worker-{i}.log") for i in range(workers)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
    wall_s = time.monotonic() - started
    with psycopg.connect(production) as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (brand, sku_id, image_hash, model_version)) "
            "FROM sku_image_embeddings").fetchone() or (0, 0)
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM sku_image_embeddings GROUP BY brand, sku_id, image_hash, "
            "model_version HAVING count(*) > 1) d").fetchone()
    jobs = job_counts(production)
    result = ChaosResult(report, done_kills, int(rows), int(distinct), int(duplicates[0] if duplicates else 0),
                         jobs, wall_s)
    if result.duplicate_keys or result.rows != result.distinct_keys:
        result.problems.append(f"{result.duplicate_keys} images embedded more than once")
    if result.distinct_keys != report.images:
        result.problems.append(f"{result.distinct_keys} of {report.images} catalog images embedded")
    if jobs.get("done", 0) != report.enqueued or set(jobs) - {"done"}:
        result.problems.append(f"jobs not all done: {jobs}")
    if done_kills < kills:
        result.problems.append(f"only {done_kills} of {kills} kills happened before the queue emptied")
    return result
