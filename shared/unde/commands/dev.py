"""`unde dev up|down|status`: the local topology, one process per function."""

from __future__ import annotations

import argparse

from unde import devstack
from unde.commands.common import add_parser, database_urls, tool_settings
from unde.db.migrate import apply_migrations


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "dev", "run every function locally as its own process")
    actions = parser.add_subparsers(dest="action", required=True)
    add_parser(actions, "up", "start databases, image server and all functions").set_defaults(func=up)
    add_parser(actions, "down", "stop the functions and the image server").set_defaults(func=down)
    add_parser(actions, "status", "show what runs where").set_defaults(func=status)


def up(args: argparse.Namespace) -> int:
    settings = tool_settings()
    urls = database_urls(settings)
    for target, url in (("production", urls.production), ("staging", urls.staging)):
        apply_migrations(url, target, settings.sql_dir)  # type: ignore[arg-type]
    for state in devstack.up(urls, settings.data_dir):
        print(f"{state.name:15} {state.url:28} pid {state.pid:<7} log {state.log}")
    return 0


def down(args: argparse.Namespace) -> int:
    stopped = devstack.down(tool_settings().data_dir)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def status(args: argparse.Namespace) -> int:
    alive = {state.name for state in devstack.running(tool_settings().data_dir)}
    for state in devstack.load_state(tool_settings().data_dir):
        print(f"{state.name:15} {state.url:28} {'up' if state.name in alive else 'DOWN'}")
    if not alive:
        print("dev stack is not running (unde dev up)")
    return 0
