"""What several sub-commands need: settings for local tools and the two database URLs."""

from __future__ import annotations

import argparse

from unde.db.embedded import DatabaseUrls, resolve_urls
from unde.settings import CommonSettings, DatabaseSettings, load_settings, secret_value


class ToolSettings(CommonSettings, DatabaseSettings):
    """Settings of the CLI itself (same variable names as the functions)."""


def tool_settings() -> ToolSettings:
    return load_settings(ToolSettings)


def database_urls(settings: ToolSettings | None = None) -> DatabaseUrls:
    """Configured database URLs, or the embedded server's (started if needed)."""
    settings = settings or tool_settings()
    return resolve_urls(secret_value(settings.production_db_url), secret_value(settings.staging_db_url),
                        settings.data_dir)


def add_parser(subparsers: argparse._SubParsersAction, name: str,
               help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text,
                                                            description=help_text)
    return parser
