"""Running a function's ASGI app in-process, exactly as functions-framework serves it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import httpx
from functions_framework.aio import create_asgi_app

from unde.settings import REPO_ROOT


def function_source(name: str) -> str:
    return str(REPO_ROOT / "functions" / name / "main.py")


def load_function(name: str) -> tuple[Any, ModuleType]:
    """The ASGI app of `functions/<name>/main.py` and its freshly imported module.

    Set the environment (monkeypatch) before calling: settings are read at import.
    """
    app = create_asgi_app(target="handle", source=function_source(name))
    return app, sys.modules["main"]


@asynccontextmanager
async def client_for(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client that talks to the ASGI app without a socket."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fn", timeout=30) as client:
        yield client
