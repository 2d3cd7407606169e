"""Structured JSON logging: one object per line, carrying the current request id.

Every line passes through `unde.redact.scrub`: URL query strings (pre-signed photo URLs) and
URL passwords never reach the log, whichever library logged them (httpx logs each request URL).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from unde import tracing
from unde.redact import scrub

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record as JSON with time, level, logger, message, request id and extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": scrub(record.getMessage()),  # no URL query strings (signatures) or passwords
        }
        context = tracing.current()
        if context is not None:
            entry["request_id"] = context.request_id
            entry["trace_id"] = context.trace_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is now (test runners swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log line of this process to stderr as JSON (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_unde", False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter(service))
    handler._unde = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
