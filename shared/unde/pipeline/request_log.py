"""Writing one `recognition_requests` row per request without adding to the shopper's latency.

`RequestLog.submit` queues the record and returns at once; a background task inserts it
(`ON CONFLICT (id) DO NOTHING`, so a retried write never makes a second row). When the
production DB does not answer, the record is spooled to a file (written atomically) and
re-sent later, so a DB outage loses nothing that reached this process. The spool file is
written before the record is queued (write-ahead) and removed once the row is in, so a process
killed with records still queued (a crash, a scale-down) leaves them on disk for the next
process sharing the spool to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

JSON_COLUMNS = frozenset({
    "detected_items", "tags", "search_results", "final_matches", "user_feedback", "flags",
    "degradations",
})
COLUMNS = (
    "id", "user_id", "photo_url", "user_mall", "detected_items", "detection_time_ms", "tags",
    "tagging_time_ms", "search_results", "search_time_ms", "availability_time_ms",
    "final_matches", "rerank_time_ms", "total_time_ms", "items_detected", "items_matched",
    "used_ximilar_booster", "used_ximilar_tagging", "pgvector_top1_score", "pgvector_margin",
    "ximilar_top1_score", "candidates_after_availability", "flags", "degradations",
    "ximilar_credits",
)
INSERT_SQL = (
    f"INSERT INTO recognition_requests ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('%(' + c + ')s' for c in COLUMNS)}) ON CONFLICT (id) DO NOTHING"
)


def row_params(record: dict[str, Any]) -> dict[str, Any]:
    """SQL parameters for one record: every column present, JSON columns wrapped."""
    params: dict[str, Any] = {}
    for column in COLUMNS:
        value = record.get(column)
        params[column] = Jsonb(value) if column in JSON_COLUMNS and value is not None else value
    return params


async def insert_record(conn: AsyncConnection, record: dict[str, Any]) -> None:
    """Insert one record (idempotent on its id)."""
    await conn.execute(INSERT_SQL, row_params(record))


class RequestLog:
    """Background writer of request records with a disk spool for outages."""

    def __init__(self, pool: AsyncConnectionPool, spool_dir: Path, *, retry_every_s: float = 5.0,
                 connect_timeout_s: float = 2.0) -> None:
        self._pool = pool
        self.connect_timeout_s = connect_timeout_s
        self.spool_dir = spool_dir
        self.retry_every_s = retry_every_s
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.spooled = 0

    def submit(self, record: dict[str, Any]) -> None:
        """Queue a record for writing (after journalling it to the spool); never raises."""
        try:
            self._save(record)
        except OSError as exc:  # a full or read-only disk must not fail the shopper's request
            log.warning("request log journal write failed: %s", exc, extra={"record_id": str(record.get("id"))})
        self._queue.put_nowait(record)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                record = await asyncio.wait_for(self._queue.get(), timeout=self.retry_every_s)
            except TimeoutError:
                await self.flush_spool()
                if self._queue.empty() and not self.spooled_files():
                    return
                continue
            try:
                await self._write_or_spool(record)
            finally:
                self._queue.task_done()

    async def _write_or_spool(self, record: dict[str, Any]) -> None:
        try:
            await self._write(record)
        except Exception as exc:  # any DB failure: keep the record on disk, retry later
            log.warning("request log write failed, spooling: %s", exc,
                        extra={"record_id": str(record.get("id"))})
            self._spool(record)
        else:
            self._spool_path(record).unlink(missing_ok=True)  # the write-ahead copy

    async def _write(self, record: dict[str, Any]) -> None:
        async with self._pool.connection(timeout=self.connect_timeout_s) as conn:
            await insert_record(conn, record)
        self.written += 1

    def _spool(self, record: dict[str, Any]) -> None:
        self._save(record)
        self.spooled += 1

    def _spool_path(self, record: dict[str, Any]) -> Path:
        if not record.get("id"):
            record["id"] = str(uuid.uuid4())
        return self.spool_dir / f"{record['id']}.json"

    def _save(self, record: dict[str, Any]) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        final = self._spool_path(record)
        temporary = final.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, default=str))
        os.replace(temporary, final)

    def spooled_files(self) -> list[Path]:
        return sorted(self.spool_dir.glob("*.json")) if self.spool_dir.is_dir() else []

    async def flush_spool(self) -> int:
        """Try to write every spooled record; returns how many were written."""
        written = 0
        for path in self.spooled_files():
            record = json.loads(path.read_text())
            try:
                await self._write(record)
            except Exception:
                return written
            path.unlink(missing_ok=True)
            written += 1
        return written

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued record is written or spooled (tests, shutdown)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
