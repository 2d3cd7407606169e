"""`unde db migrate|up|down|urls`: the two databases."""

from __future__ import annotations

import argparse

from unde.commands.common import add_parser, database_urls, tool_settings
from unde.db.embedded import stop_embedded
from unde.db.migrate import apply_migrations


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "db", "manage the production and staging databases")
    actions = parser.add_subparsers(dest="action", required=True)
    add_parser(actions, "migrate", "apply pending migrations to both databases").set_defaults(
        func=migrate)
    add_parser(actions, "up", "start the embedded server (local default) and migrate"
               ).set_defaults(func=migrate)
    add_parser(actions, "down", "stop the embedded server").set_defaults(func=down)
    add_parser(actions, "urls", "print the two database URLs").set_defaults(func=urls)


def migrate(args: argparse.Namespace) -> int:
    settings = tool_settings()
    found = database_urls(settings)
    for target, url in (("production", found.production), ("staging", found.staging)):
        report = apply_migrations(url, target, settings.sql_dir)  # type: ignore[arg-type]
        print(report.summary())
    return 0


def down(args: argparse.Namespace) -> int:
    stopped = stop_embedded(tool_settings().data_dir)
    print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def urls(args: argparse.Namespace) -> int:
    found = database_urls()
    print(f"PRODUCTION_DB_URL={found.production}")
    print(f"STAGING_DB_URL={found.staging}")
    return 0
