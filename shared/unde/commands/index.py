"""`unde index [--plan-only] [--workers N]`: plan the missing catalog images, then embed them
locally with a progress bar (images/s, ETA) and print the totals."""

from __future__ import annotations

import argparse
import asyncio

from unde.commands.common import add_parser, database_urls
from unde.db.embedded import DatabaseUrls
from unde.db.migrate import apply_migrations
from unde.indexing.consumer import IndexCounts
from unde.indexing.service import IndexingService, open_service
from unde.settings import IndexerSettings, load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "index", "embed every catalog image not yet indexed (planner + consumers)")
    parser.add_argument("--plan-only", action="store_true", help="only enqueue the missing images")
    parser.add_argument("--workers", type=int, default=1,
                        help="concurrent consumers in this process (default 1; each overlaps "
                             "fetching with inference)")
    parser.add_argument("--max-jobs", type=int, default=None, help="stop after this many images")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    settings = load_settings(IndexerSettings)
    urls = database_urls()
    apply_migrations(urls.production, "production", settings.sql_dir)
    return asyncio.run(_index(settings, urls, args))


async def _index(settings: IndexerSettings, urls: DatabaseUrls, args: argparse.Namespace) -> int:
    service = await open_service(settings, urls=urls)
    try:
        report = await service.plan()
        print(report.summary())
        if args.plan_only:
            return 0
        totals = await _consume_with_progress(service, args.workers, args.max_jobs)
        repaired, index = await service.maintain_search()
        print(f"search index: {index.rows} SKU rows, {index.lists} lists"
              + (" (rebuilt)" if index.rebuilt else "") + f"; {repaired} SKU means repaired")
        counts = await service.status_counts()
    finally:
        await service.close()
    rate = totals.claimed / totals.seconds if totals.seconds else 0.0
    print(f"indexed {totals.written} new rows from {totals.claimed} jobs in {totals.seconds:.1f}s "
          f"({rate:.1f} images/s): {totals.inferred} embedded, {totals.reused} reused by hash, "
          f"{totals.retried} to retry, {totals.dead} dead")
    print("queue: " + ", ".join(f"{name} {value}" for name, value in counts.items()))
    return 0 if totals.dead == 0 else 1


async def _consume_with_progress(service: IndexingService, workers: int,
                                 max_jobs: int | None) -> IndexCounts:
    from tqdm import tqdm

    waiting = (await service.status_counts())
    total = waiting["pending"] + waiting["running"]
    if max_jobs is not None:
        total = min(total, max_jobs)
    per_worker = None if max_jobs is None else max(1, -(-max_jobs // workers))
    totals = IndexCounts()
    with tqdm(total=total, unit="img", desc=f"indexing {service.model_version}", smoothing=0.1) as bar:
        def progress(counts: IndexCounts) -> None:
            bar.update(counts.claimed)
            bar.set_postfix(reused=totals.reused, dead=totals.dead, refresh=False)

        runs = await asyncio.gather(*(service.consume(per_worker, on_batch=progress)
                                      for _ in range(workers)))
    for counts in runs:
        totals.add(counts)
    totals.seconds = max((counts.seconds for counts in runs), default=0.0)
    return totals
