"""`unde demo` (= `make demo`): the main job end to end on the embedded defaults.

Embedded PostgreSQL → seed the synthetic mall (small) → start every function as its own
process → index the catalog → recognize street photos in two malls → print what was found
per garment and a summary against the ground truth.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx

from unde import devstack
from unde.commands.common import add_parser, database_urls, tool_settings
from unde.commands.recognize import post_photo
from unde.console.links import console_url
from unde.db.migrate import apply_migrations
from unde.pipeline.present import describe_response
from unde.pipeline.scorecard import Scorecard, format_summary


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "demo", "seed, index and recognize sample street photos end to end")
    parser.add_argument("--photos", type=int, default=8, help="street photos to recognize")
    parser.add_argument("--keep-running", action="store_true", help="leave the functions running afterwards")
    parser.set_defaults(func=run)


def _pick_photos(data_dir: Path, count: int) -> list[dict[str, Any]]:
    """Photos from at least two malls, alternating."""
    photos = json.loads((data_dir / "street" / "ground_truth.json").read_text())["photos"]
    by_mall: dict[str, list[dict[str, Any]]] = {}
    for photo in photos:
        by_mall.setdefault(photo["mall"], []).append(photo)
    picked: list[dict[str, Any]] = []
    while len(picked) < count and any(by_mall.values()):
        for queue in by_mall.values():
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return picked


def index_via_function(client: httpx.Client, indexer_url: str, batch: int = 128,
                       headers: dict[str, str] | None = None) -> str:
    """Plan, then drain the queue through the indexer function (as KEDA-scaled pods would)."""
    plan = client.post(f"{indexer_url}/plan", json={}, headers=headers).raise_for_status().json()
    written = inferred = reused = dead = 0
    depth = plan["queue_depth"]
    while depth > 0:
        counts = client.post(f"{indexer_url}/embed_batch", json={"max_jobs": batch},
                             headers=headers).raise_for_status().json()
        written, inferred = written + counts["written"], inferred + counts["inferred"]
        reused, dead = reused + counts["reused"], dead + counts["dead"]
        depth = counts["queue_depth"] if counts["claimed"] else 0
    return (f"{plan['images']} catalog images ({plan['model_version']}): {plan['already_embedded']} already "
            f"embedded, {written} written now ({inferred} embedded, {reused} reused by hash, {dead} dead)")


def run(args: argparse.Namespace) -> int:
    from unde.synthetic.seed import seed_dataset

    settings = tool_settings()
    print("1/5 databases: embedded PostgreSQL 18 + pgvector 0.8 (production and staging)")
    urls = database_urls(settings)
    for target, url in (("production", urls.production), ("staging", urls.staging)):
        print("    " + apply_migrations(url, target, settings.sql_dir).summary())  # type: ignore[arg-type]
    print("2/5 seeding the synthetic mall (scale small)")
    print("    " + seed_dataset(urls.staging, settings.data_dir, scale="small",
                                image_base_url=devstack.IMAGE_BASE_URL).summary().replace("\n", "\n    "))
    print("3/5 starting every function as its own process")
    for state in devstack.up(urls, settings.data_dir):
        print(f"    {state.name:15} {state.url}")
    try:
        orchestrator = devstack.BY_NAME["orchestrator"].url
        with httpx.Client(timeout=300.0) as client:
            print("4/5 indexing the catalog into pgvector (indexer function)")
            print("    " + index_via_function(client, devstack.BY_NAME["indexer"].url,
                                           headers=devstack.internal_headers(settings.data_dir)))
            print(f"5/5 recognizing {args.photos} street photos")
            card = Scorecard()
            for photo in _pick_photos(settings.data_dir, args.photos):
                path = settings.data_dir / "street" / photo["file"]
                response = post_photo(client, orchestrator, str(path), photo["mall"])
                response.raise_for_status()
                body = response.json()
                print(f"\n{photo['file']} in {photo['mall']}:\n" + describe_response(body))
                card.add(photo, body)
        print("\nSummary against ground truth (offline providers: classical CV baseline, not FashionCLIP/"
              "Ximilar/Gemini):")
        print(format_summary(card.summary()))
        first = _pick_photos(settings.data_dir, 1)[0]
        live = "" if args.keep_running else (
            "\n    (live while the stack runs: `unde demo --keep-running` or `unde dev up`)")
        print(f"\nQA console: {console_url(orchestrator, first['file'], first['mall'])}{live}")
    finally:
        if not args.keep_running:
            devstack.down(settings.data_dir)
    return 0
