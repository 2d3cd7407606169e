"""The queue worker KEDA-scaled pods run: ``python -m unde.indexing.worker``.

Claim → process → repeat. When nothing is ready it polls every INDEX_POLL_INTERVAL_S; with
``--idle-exit-s N`` it exits after N idle seconds (a KEDA ScaledJob), without it it runs until
stopped (a KEDA-scaled Deployment, which scales to zero by terminating pods). On SIGTERM or
SIGINT it finishes the batch in hand, hands the prefetched batch back to the queue and exits
0 — within Kubernetes' grace period as long as one batch takes less than it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence

from unde.errors import UndeError
from unde.indexing.consumer import IndexCounts
from unde.indexing.service import IndexingService, open_service
from unde.logs import configure_logging
from unde.settings import IndexerSettings, load_settings

log = logging.getLogger("unde.indexing.worker")


async def work(service: IndexingService, stop: asyncio.Event, *, idle_exit_s: float | None,
               poll_interval_s: float) -> IndexCounts:
    """Consume until `stop` is set (or idle for `idle_exit_s`); returns the totals."""
    total = IndexCounts()
    idle_since = time.monotonic()
    drained = True
    while not stop.is_set():
        counts = await service.consume(stop=stop)
        total.add(counts)
        if counts.claimed:
            idle_since = time.monotonic()
            drained = False
            log.info("indexed batch run", extra={"counts": counts.as_dict()})
            continue
        if not drained:  # the queue just emptied: repair SKU means, rebuild the index if outgrown
            drained = True
            try:
                await service.maintain_search()
            except Exception:
                log.warning("search upkeep failed; retried after the next drain", exc_info=True)
        if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
            log.info("queue idle for %.0fs, exiting", idle_exit_s)
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=poll_interval_s)
    return total


async def main_async(settings: IndexerSettings, idle_exit_s: float | None) -> IndexCounts:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = await open_service(settings)
    log.info("worker started", extra={"model_version": service.model_version})
    try:
        return await work(service, stop, idle_exit_s=idle_exit_s,
                          poll_interval_s=settings.index_poll_interval_s)
    finally:
        await service.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unde.indexing.worker",
                                     description="index_jobs queue consumer")
    parser.add_argument("--idle-exit-s", type=float, default=None,
                        help="exit after this many seconds with nothing to do (default: never)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(IndexerSettings)
    except UndeError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging("indexer-worker", settings.log_level)
    total = asyncio.run(main_async(settings, args.idle_exit_s))
    log.info("worker stopped", extra={"counts": total.as_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
