"""The embedder function in-process: every input form, and every bad input as a 4xx."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from functions_framework.aio import create_asgi_app
from PIL import Image

from tests.models.tiny_models import write_model_dir

SOURCE = str(Path(__file__).resolve().parents[2] / "functions" / "embedder" / "main.py")


def jpeg(size: tuple[int, int] = (600, 480), colour: tuple[int, int, int] = (180, 40, 60)) -> bytes:
    rng = np.random.default_rng(sum(size))
    pixels = np.clip(rng.normal(0, 20, (size[1], size[0], 3)) + colour, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def png(size: tuple[int, int] = (200, 300)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, (10, 200, 30, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("embedder-model"))


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    """A local HTTP server serving /photo.jpg (allow-listed by host:port in the tests)."""
    body = jpeg()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/photo.jpg" else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch, model_dir: Path,
                 image_server: str) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("EMBED_PROVIDER", "fashionclip")
    monkeypatch.setenv("MODEL_DIR", str(model_dir))
    monkeypatch.setenv("ALLOWED_IMAGE_HOSTS", image_server)
    monkeypatch.setenv("IMAGE_MAX_BYTES", "200000")
    monkeypatch.setenv("IMAGE_MAX_PIXELS", "4000000")
    monkeypatch.setenv("EMBED_MAX_BATCH", "4")
    monkeypatch.setenv("INTRA_OP_THREADS", "1")
    app = create_asgi_app(target="handle", source=SOURCE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fn") as http:
        yield http


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_healthz_reports_the_model(client: httpx.AsyncClient) -> None:
    body = (await client.get("/healthz")).json()
    assert body["provider"] == "fashionclip" and body["model_version"] == "tiny-test-v1"
    assert body["dim"] == 512 and body["role"] == "latency"
    assert body["threads"] == {"intra_op": 1, "inter_op": 1}


async def test_every_input_form_gives_the_same_vector(client: httpx.AsyncClient, image_server: str) -> None:
    data = jpeg()
    raw = await client.post("/embed", content=data, headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert len(body["embedding"]) == 512 and body["model_version"] == "tiny-test-v1" and body["ms"] >= 0
    assert np.linalg.norm(body["embedding"]) == pytest.approx(1.0, abs=1e-5)
    multipart = await client.post("/embed", files={"image": ("p.jpg", data, "image/jpeg")})
    inline = await client.post("/embed", json={"image": {"base64": b64(data)}})
    by_url = await client.post("/embed", json={"image": {"url": f"http://{image_server}/photo.jpg"}})
    for response in (multipart, inline, by_url):
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["embedding"], body["embedding"], atol=1e-5)


async def test_bbox_crops_in_every_form(client: httpx.AsyncClient) -> None:
    data = jpeg()
    whole = (await client.post("/embed", json={"image": {"base64": b64(data)}})).json()["embedding"]
    box = [100, 50, 400, 450]
    in_json = await client.post("/embed", json={"image": {"base64": b64(data), "bbox": box}})
    in_query = await client.post("/embed?bbox=100,50,400,450", content=data,
                                 headers={"Content-Type": "image/jpeg"})
    in_form = await client.post("/embed", files={"image": ("p.jpg", data, "image/jpeg")},
                                data={"bbox": "[100, 50, 400, 450]"})
    vectors = [r.json()["embedding"] for r in (in_json, in_query, in_form)]
    np.testing.assert_allclose(vectors[1], vectors[0], atol=1e-5)
    np.testing.assert_allclose(vectors[2], vectors[0], atol=1e-5)
    assert float(np.dot(vectors[0], whole)) < 0.9999


async def test_batch_equals_singles(client: httpx.AsyncClient) -> None:
    images = [jpeg(), png(), jpeg((320, 320), (20, 20, 200))]
    response = await client.post("/embed", json={"images": [{"base64": b64(d)} for d in images]})
    assert response.status_code == 200, response.text
    batch = response.json()["embeddings"]
    assert len(batch) == 3
    for data, vector in zip(images, batch, strict=True):
        single = (await client.post("/embed", json={"image": {"base64": b64(data)}})).json()["embedding"]
        np.testing.assert_allclose(vector, single, atol=1e-5)


async def test_offline_descriptor_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBED_PROVIDER", "local")
    app = create_asgi_app(target="handle", source=SOURCE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fn") as http:
        health = (await http.get("/healthz")).json()
        assert (health["provider"], health["model_version"]) == ("local", "unde-descriptor-v1")
        response = await http.post("/embed", content=jpeg(), headers={"Content-Type": "image/jpeg"})
        assert response.status_code == 200
        assert response.json()["model_version"] == "unde-descriptor-v1"


def bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (4000, 4000), 0).save(buffer, format="PNG")  # 16 MP, a few KB compressed
    return buffer.getvalue()


@pytest.mark.parametrize(("kwargs", "status", "field"), [
    ({"content": b"hello, not an image", "headers": {"Content-Type": "image/jpeg"}}, 415, "image"),
    ({"content": b"", "headers": {"Content-Type": "image/jpeg"}}, 422, "image"),
    ({"content": b"\xff" * 300_000, "headers": {"Content-Type": "image/jpeg"}}, 413, "body"),
    ({"content": bomb(), "headers": {"Content-Type": "image/png"}}, 413, "image"),
    ({"content": b"x=1", "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type"),
    ({"content": b"{broken", "headers": {"Content-Type": "application/json"}}, 400, "body"),
    ({"json": {"image": {"url": "http://127.0.0.1:9/x.jpg"}}}, 422, "url"),
    ({"json": {"image": {"url": "http://10.1.2.3/x.jpg"}}}, 422, "url"),
    ({"json": {"image": {"url": "http://169.254.169.254/latest/meta-data"}}}, 422, "url"),
    ({"json": {"image": {"url": "file:///etc/passwd"}}}, 422, "url"),
    ({"json": {"image": {"base64": "!!!not base64!!!"}}}, 422, "base64"),
    ({"json": {"image": {"base64": b64(jpeg()), "bbox": [10, 10, 5, 50]}}}, 422, "image.bbox"),
    ({"json": {"image": {"base64": b64(jpeg()), "bbox": [1, 2, 3]}}}, 422, "image.bbox"),
    ({"json": {"image": {"base64": b64(jpeg()), "bbox": [5000, 5000, 6000, 6000]}}}, 422, "image.bbox"),
    ({"content": jpeg(), "headers": {"Content-Type": "image/jpeg"}, "params": {"bbox": "NaN,1,2,3"}},
     422, "bbox"),
    ({"content": jpeg(), "headers": {"Content-Type": "image/jpeg"}, "params": {"bbox": "a,b"}}, 422, "bbox"),
    ({"json": {"images": [{"base64": b64(png())}] * 5}}, 422, "images"),
    ({"json": {"images": []}}, 422, "images"),
    ({"json": {"image": {"base64": b64(png())}, "images": [{"base64": b64(png())}]}}, 422, "body"),
    ({"json": {}}, 422, "body"),
    ({"files": {"other": ("p.jpg", b"123", "image/jpeg")}}, 422, "image"),
])
async def test_bad_input_is_a_clear_4xx(client: httpx.AsyncClient, kwargs: dict, status: int,
                                        field: str) -> None:
    response = await client.post("/embed", **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] in ("bad_input", "url_not_allowed")
    assert body.get("field") == field, body
