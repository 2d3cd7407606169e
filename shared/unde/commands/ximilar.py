"""`unde ximilar sync [--dry-run]`: fill the Ximilar collection with the pilot brands' photos."""

from __future__ import annotations

import argparse
import asyncio

import httpx
from psycopg import AsyncConnection

from unde.commands.common import add_parser
from unde.db.embedded import resolve_urls
from unde.errors import ConfigError
from unde.providers.ximilar import client_from_settings
from unde.providers.ximilar.sync import SyncReport, sync_collection
from unde.settings import VisionGatewaySettings, load_settings, secret_value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "ximilar", "manage the Ximilar search collection")
    actions = parser.add_subparsers(dest="action", required=True)
    sync = add_parser(actions, "sync", "insert the pilot brands' photos (2 per SKU), remove "
                      "SKUs that left the catalog; idempotent")
    sync.add_argument("--dry-run", action="store_true", help="report what would change")
    sync.set_defaults(func=run_sync)


async def sync_from_settings(settings: VisionGatewaySettings, *, dry_run: bool) -> SyncReport:
    """Run one sync with the gateway's settings (token, collection, pilot brands, staging)."""
    if not settings.ximilar_configured or not settings.ximilar_collection_id:
        raise ConfigError("ximilar sync needs XIMILAR_API_TOKEN and XIMILAR_COLLECTION_ID")
    if not settings.ximilar_pilot_brands:
        raise ConfigError("XIMILAR_PILOT_BRANDS is empty: name the brands to put in the collection")
    urls = await asyncio.to_thread(resolve_urls, secret_value(settings.production_db_url),
                                   secret_value(settings.staging_db_url), settings.data_dir)
    async with httpx.AsyncClient() as http, await AsyncConnection.connect(urls.staging) as conn:
        client = client_from_settings(settings, http)
        return await sync_collection(client, conn, settings.ximilar_pilot_brands, dry_run=dry_run)


def run_sync(args: argparse.Namespace) -> int:
    report = asyncio.run(sync_from_settings(load_settings(VisionGatewaySettings),
                                            dry_run=args.dry_run))
    print(report.summary())
    for failure in report.failed:
        print(f"  {failure}")
    return 1 if report.failed else 0
