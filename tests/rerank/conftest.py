"""Fixtures for the reranker tests: the fake Gemini, a loopback photo host, JPEG helpers."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.gemini_server import FakeGemini, fake_gemini, serve_in_thread


def jpeg(colour: str | tuple[int, int, int], size: tuple[int, int] = (64, 80)) -> bytes:
    """A plain JPEG of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


class PhotoHost:
    """Catalog photos served over loopback HTTP by name."""

    def __init__(self) -> None:
        self.photos: dict[str, bytes] = {}
        self.base_url = ""

    def add(self, name: str, data: bytes) -> str:
        self.photos[name] = data
        return f"{self.base_url}/img/{name}"

    @property
    def host(self) -> str:
        return self.base_url.removeprefix("http://")

    async def serve(self, request: Request) -> Response:
        data = self.photos.get(request.path_params["name"])
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/jpeg")


@pytest.fixture
def gemini() -> Iterator[tuple[FakeGemini, str]]:
    """A running fake Gemini: (state, base_url)."""
    with fake_gemini(slow_s=3.0) as running:
        yield running


@pytest.fixture
def photo_host() -> Iterator[PhotoHost]:
    host = PhotoHost()
    app = Starlette(routes=[Route("/img/{name}", host.serve)])
    with serve_in_thread(app) as base_url:
        host.base_url = base_url
        yield host
