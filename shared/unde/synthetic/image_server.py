"""Serve ``data_dir/images`` over loopback HTTP the way production serves S3 image URLs.

``GET /catalog/{brand}/{external_id}/{rank}.jpg`` returns the JPEG (``image/jpeg``, with
``Content-Length``). A missing catalog image is rendered on request from the data directory's
manifest (seed + scale) and cached on disk — that is how full-scale data sets work without
pre-rendering ~280 K files. Unknown SKUs/ranks give 404; paths with ``..`` (or other escapes)
give 400.

Blocking: ``serve_images(data_dir)``. In tests::

    with ImageServer(data_dir, port=0) as server:
        httpx.get(f"{server.base_url}/catalog/northline/NL-000001/0.jpg")
"""

from __future__ import annotations

import re
import threading
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Final
from urllib.parse import unquote, urlsplit

from unde.synthetic.catalog import SKUS_PER_SCALE, Catalog, generate_catalog
from unde.synthetic.layout import RENDER_VERSION, images_root, read_manifest, write_bytes_atomic
from unde.synthetic.render import jpeg_bytes, render_product_image

_CATALOG_PATH: Final[re.Pattern[str]] = re.compile(r"^catalog/([A-Za-z0-9_-]+)/([A-Za-z0-9_.-]+)/(\d+)\.jpg$")
_CONTENT_TYPES: Final[dict[str, str]] = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


class LazyRenderer:
    """Renders missing catalog images from the manifest's seed/scale; thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._loaded = False

    def _get_catalog(self) -> Catalog | None:
        with self._lock:
            if not self._loaded:
                self._loaded = True
                manifest = read_manifest(self.data_dir)
                if (
                    manifest
                    and manifest.get("render_version") == RENDER_VERSION
                    and manifest.get("scale") in SKUS_PER_SCALE
                    and isinstance(manifest.get("seed"), int)
                ):
                    self._catalog = generate_catalog(manifest["seed"], manifest["scale"])
            return self._catalog

    def warm(self) -> None:
        """Generate the catalog now (full scale takes seconds) instead of on the first request."""
        self._get_catalog()

    def render(self, rel: str) -> bytes | None:
        """JPEG bytes for a catalog image path (rendered and cached), or None if unknown."""
        match = _CATALOG_PATH.match(rel)
        if not match:
            return None
        catalog = self._get_catalog()
        if catalog is None:
            return None
        brand, external_id, rank = match.group(1), match.group(2), int(match.group(3))
        sku = catalog.sku(brand, external_id)
        if sku is None or rank >= sku.n_images:
            return None
        data = jpeg_bytes(render_product_image(sku, rank))
        write_bytes_atomic(images_root(self.data_dir) / rel, data)
        return data


def _safe_relpath(raw_path: str) -> str | None:
    """The request path as a relative path under the images root, or None if it could escape."""
    path = unquote(urlsplit(raw_path).path)
    if "\\" in path or "\x00" in path:
        return None
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        return None
    return "/".join(parts)


class ImageRequestHandler(BaseHTTPRequestHandler):
    """GET/HEAD handler for the image tree."""

    server_version = "UndeImageServer/1"

    def __init__(self, *args: object, root: Path, renderer: LazyRenderer, **kwargs: object) -> None:
        self.root = root
        self.renderer = renderer
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request logging."""

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.OK:
            self.send_header("Cache-Control", "public, max-age=86400")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        rel = _safe_relpath(self.path)
        if rel is None:
            self._send(HTTPStatus.BAD_REQUEST, b"bad path\n", "text/plain", head)
            return
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            self._send(HTTPStatus.BAD_REQUEST, b"bad path\n", "text/plain", head)
            return
        ctype = _CONTENT_TYPES.get(path.suffix.lower())
        if ctype is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head)
            return
        data: bytes | None
        try:
            data = path.read_bytes() if path.is_file() else None
        except OSError:
            data = None
        if data is None:
            data = self.renderer.render(rel)
        if data is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head)
            return
        self._send(HTTPStatus.OK, data, ctype, head)

    def do_GET(self) -> None:
        """Serve an image."""
        self._serve(head=False)

    def do_HEAD(self) -> None:
        """Headers only."""
        self._serve(head=True)


def make_server(data_dir: Path, host: str = "127.0.0.1", port: int = 8090) -> ThreadingHTTPServer:
    """A ``ThreadingHTTPServer`` for ``data_dir/images`` (not started)."""
    data_dir = Path(data_dir).resolve()
    root = images_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    renderer = LazyRenderer(data_dir)
    manifest = read_manifest(data_dir)
    if manifest and manifest.get("lazy_images"):
        threading.Thread(target=renderer.warm, name="image-server-warm", daemon=True).start()
    handler = partial(ImageRequestHandler, root=root.resolve(), renderer=renderer)
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_images(data_dir: Path, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Serve images until interrupted (blocking)."""
    server = make_server(data_dir, host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # pragma: no cover - interactive use
        pass
    finally:
        server.server_close()


class ImageServer:
    """The image server on a background thread; a context manager. ``port=0`` picks a free port."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = make_server(data_dir, host, port)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` (no trailing slash)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ImageServer:
        """Start serving on a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="image-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ImageServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
