"""`unde`: the project's one command line. Each sub-command lives in `unde.commands.<name>`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from unde.errors import ConfigError, UndeError

#: Sub-command modules; each exposes `register(subparsers)` and sets `func` on its parser.
COMMAND_MODULES = (
    "unde.commands.db",
    "unde.commands.seed",
    "unde.commands.index",
    "unde.commands.dev",
    "unde.commands.recognize",
    "unde.commands.demo",
    "unde.commands.flags",
    "unde.commands.ximilar",
    "unde.commands.eval",
    "unde.commands.calibrate",
    "unde.commands.openapi",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unde", description="UNDE Recognition tools")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `unde` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except UndeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
