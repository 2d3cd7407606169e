"""`unde seed --scale small|medium|full`: synthetic mall data into staging + the data folder."""

from __future__ import annotations

import argparse

from unde.commands.common import add_parser, database_urls, tool_settings
from unde.db.migrate import apply_migrations

DEFAULT_IMAGE_BASE_URL = "http://127.0.0.1:8090"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "seed", "generate the synthetic catalog, stock and street photos")
    parser.add_argument("--scale", choices=("small", "medium", "full"), default="small")
    parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same data)")
    parser.add_argument("--image-base-url", default=DEFAULT_IMAGE_BASE_URL,
                        help="base of catalog image URLs (the local image server)")
    parser.add_argument("--street-photos", type=int, default=None,
                        help="number of street photos (default depends on scale)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unde.synthetic.seed import seed_dataset

    settings = tool_settings()
    urls = database_urls(settings)
    for target, url in (("production", urls.production), ("staging", urls.staging)):
        apply_migrations(url, target, settings.sql_dir)  # type: ignore[arg-type]
    report = seed_dataset(urls.staging, settings.data_dir, scale=args.scale, seed=args.seed,
                          image_base_url=args.image_base_url, street_photos=args.street_photos)
    print(report.summary())
    return 0
