"""`unde eval`: quality, call rates, credits and latency on labelled street photos, per search
backend configuration side by side → report.json + report.html (+ labels for calibration)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from unde.commands.common import add_parser, database_urls, tool_settings
from unde.db.embedded import DatabaseUrls
from unde.db.migrate import apply_migrations
from unde.evaluation import report
from unde.evaluation.run import EvalPlan, parse_backends, run_eval
from unde.settings import IndexerSettings, load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "eval", "score the pipeline on labelled street photos, one column "
                        "per search backend")
    parser.add_argument("--backend", default="pgvector,conditional,dual",
                        help="comma-separated SEARCH_BACKEND values to compare")
    parser.add_argument("--photos", type=int, default=None, help="at most this many photos (default all)")
    parser.add_argument("--ground-truth", type=Path, default=None,
                        help="a ground_truth.json (or its folder); default DATA_DIR/street, seeded if missing")
    parser.add_argument("--out", type=Path, default=None, help="report directory (default DATA_DIR/eval)")
    parser.add_argument("--no-fake-ximilar", action="store_true",
                        help="run Ximilar configurations without the local fake (their calls degrade)")
    parser.set_defaults(func=run)


def index_catalog(urls: DatabaseUrls, data_dir: Path) -> str:
    """Embed every catalog image not yet indexed (the image server must be up)."""
    from unde.commands import index as index_command

    shared_index = getattr(index_command, "index_catalog", None)  # being added by the indexer's owner
    if shared_index is None:
        return asyncio.run(_index(urls, data_dir))
    return str(shared_index(urls, data_dir))


async def _index(urls: DatabaseUrls, data_dir: Path) -> str:
    from unde import devstack
    from unde.indexing.service import open_service

    settings = load_settings(IndexerSettings, data_dir=data_dir,
                             allowed_image_hosts=[f"{devstack.HOST}:{devstack.IMAGE_PORT}"])
    service = await open_service(settings, urls=urls)
    try:
        plan = await service.plan()
        counts = await service.consume()
    finally:
        await service.close()
    return f"{plan.summary()}; indexed {counts.written} rows ({counts.dead} dead)"


def prepare_data(urls: DatabaseUrls, data_dir: Path, ground_truth: Path | None,
                 seed_scale: str = "small") -> Path:
    """Migrate both databases; seed the synthetic mall when no ground truth is given or present.
    Returns the ground truth path."""
    from unde import devstack

    settings = tool_settings()
    for target, url in (("production", urls.production), ("staging", urls.staging)):
        apply_migrations(url, target, settings.sql_dir)  # type: ignore[arg-type]
    if ground_truth is not None:
        return ground_truth
    default = data_dir / "street" / "ground_truth.json"
    if not default.exists():
        from unde.synthetic.seed import seed_dataset

        print(f"  seeding the synthetic mall ({seed_scale}) into {data_dir}")
        seed_dataset(urls.staging, data_dir, scale=seed_scale, image_base_url=devstack.IMAGE_BASE_URL)
    return default


def run(args: argparse.Namespace) -> int:
    if args.photos is not None and args.photos < 1:
        raise SystemExit("--photos must be at least 1")
    settings = tool_settings()
    urls = database_urls(settings)
    truth = prepare_data(urls, settings.data_dir, args.ground_truth)
    plan = EvalPlan(parse_backends(args.backend), truth, settings.data_dir, urls, photos=args.photos,
                    use_fake_ximilar=not args.no_fake_ximilar)
    results = run_eval(plan, lambda: print("  " + index_catalog(urls, settings.data_dir)))
    built = report.build(results, str(truth))
    paths = report.write(built, args.out or settings.data_dir / "eval")
    print(report.format_table(built))
    print(f"report: {paths[1]} ({paths[0].name}; labels for `unde calibrate --labels`: "
          f"{', '.join(p.name for p in paths[2:])})")
    return 0
