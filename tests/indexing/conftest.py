"""Indexing fixtures: a counting test embedder, a local image CDN, a seeded staging catalog."""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from PIL import Image
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from unde.db.pool import open_pool
from unde.fetch import FetchPolicy
from unde.indexing.consumer import ConsumerConfig, IndexConsumer


class CountingEmbedder:
    """A deterministic ImageEmbedder: 8×8 thumbnail → fixed projection → unit 512-d rows.

    Counts calls and images so tests can prove no inference was spent."""

    model_version = "test-embedder-v1"
    dim = 512

    def __init__(self) -> None:
        self.calls = 0
        self.images = 0
        self._projection = np.random.default_rng(0).standard_normal((192, self.dim)).astype(np.float32)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.calls += 1
        self.images += len(images)
        thumbs = np.stack([np.asarray(img.convert("RGB").resize((8, 8)), dtype=np.float32).reshape(-1) / 255
                           for img in images])
        vectors = (thumbs - 0.5) @ self._projection
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def jpeg(colour: tuple[int, int, int], size: int = 64, stripe: int = 0) -> bytes:
    image = Image.new("RGB", (size, size), colour)
    if stripe:
        for x in range(0, size, stripe):
            image.paste((255 - colour[0], 255 - colour[1], 255 - colour[2]), (x, 0, x + 2, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@dataclass
class ImageCdn:
    """A local HTTP server standing in for the catalog's image host."""

    host: str
    files: dict[str, bytes] = field(default_factory=dict)
    fail_times: dict[str, int] = field(default_factory=dict)   # path → how many 503s first
    hits: Counter[str] = field(default_factory=Counter)

    def url(self, path: str) -> str:
        return f"http://{self.host}/{path.lstrip('/')}"


@pytest.fixture
def cdn() -> Iterator[ImageCdn]:
    state: dict[str, ImageCdn] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server = state["cdn"]
            path = self.path.lstrip("/")
            server.hits[path] += 1
            if server.fail_times.get(path, 0) > 0:
                server.fail_times[path] -= 1
                self.send_response(503)
                self.end_headers()
                return
            body = server.files.get(path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["cdn"] = ImageCdn(host=f"127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state["cdn"]
    httpd.shutdown()
    httpd.server_close()


def add_product(staging_url: str, cdn: ImageCdn, brand: str, sku: str, images: list[bytes],
                urls: list[str] | None = None) -> list[str]:
    """Insert one raw_products row whose images the CDN serves; returns its image URLs."""
    if urls is None:
        urls = []
        for rank, data in enumerate(images):
            path = f"{brand}/{sku}/{rank}.jpg"
            cdn.files[path] = data
            urls.append(cdn.url(path))
    with psycopg.connect(staging_url) as conn:
        conn.execute(
            "INSERT INTO raw_products (brand, external_id, name, price, currency, category, product_type,"
            " colour, material, pattern, image_urls, image_kinds) VALUES (%s, %s, %s, 199.50, 'AED', 'top',"
            " 'shirt', 'navy', 'cotton', 'striped', %s, %s)",
            (brand, sku, f"Shirt {sku}", Jsonb(urls), Jsonb(["flat"] * len(urls))))
    return urls


def seed_catalog(staging_url: str, cdn: ImageCdn, products: int = 6, photos: int = 3) -> int:
    """`products` SKUs over two brands, each photo distinct; returns the image count."""
    for p in range(products):
        images = [jpeg((20 * p + 5, 40 * r + 10, 200 - 10 * p), stripe=(r + 2)) for r in range(photos)]
        add_product(staging_url, cdn, "northline" if p % 2 else "aurelle", f"SKU-{p:03d}", images)
    return products * photos


@pytest.fixture
async def production_pool(production_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(production_url, name="production", min_size=1, max_size=4, vector=True)
    yield pool
    await pool.close()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


def make_consumer(pool: AsyncConnectionPool, embedder: CountingEmbedder, client: httpx.AsyncClient,
                  cdn: ImageCdn, **config: Any) -> IndexConsumer:
    policy = FetchPolicy.of([cdn.host], max_bytes=1_000_000, timeout_s=5.0)
    options = {"batch_size": 4, "fetch_concurrency": 4, "lease_s": 30.0, "max_attempts": 3,
               "backoff_base_s": 0.0, **config}
    return IndexConsumer(pool, embedder, client, policy, ConsumerConfig(**options))
