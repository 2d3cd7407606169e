"""Image server: files, 404, traversal, lazy rendering from the manifest."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import httpx

from unde.synthetic.catalog import generate_catalog
from unde.synthetic.image_server import ImageServer
from unde.synthetic.layout import RENDER_VERSION, catalog_image_path
from unde.synthetic.render import jpeg_bytes, render_product_image


def _raw_get(base_url: str, path: str) -> int:
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", path)
    status = conn.getresponse().status
    conn.close()
    return status


def test_serves_files_404_and_rejects_traversal(tmp_path: Path) -> None:
    target = catalog_image_path(tmp_path, "northline", "NL-000001", 0)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\xff\xd8\xff fake jpeg")
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    with ImageServer(tmp_path, port=0) as server:
        r = httpx.get(f"{server.base_url}/catalog/northline/NL-000001/0.jpg")
        assert r.status_code == 200 and r.content == target.read_bytes()
        assert r.headers["content-type"] == "image/jpeg"
        assert r.headers["content-length"] == str(len(target.read_bytes()))
        assert httpx.head(f"{server.base_url}/catalog/northline/NL-000001/0.jpg").status_code == 200
        assert httpx.get(f"{server.base_url}/catalog/northline/NL-000001/9.jpg").status_code == 404
        assert httpx.get(f"{server.base_url}/nothing.jpg").status_code == 404
        for bad in (
            "/../secret.jpg",
            "/catalog/../../secret.jpg",
            "/%2e%2e/secret.jpg",
            "/catalog/%2E%2E/%2E%2E/secret.jpg",
        ):
            assert _raw_get(server.base_url, bad) == 400, bad


def test_lazy_render_from_manifest(tmp_path: Path) -> None:
    manifest = {
        "version": 1,
        "seed": 7,
        "scale": "small",
        "render_version": RENDER_VERSION,
        "lazy_images": True,
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    sku = generate_catalog(7, "small").skus[10]
    with ImageServer(tmp_path) as server:
        url = f"{server.base_url}/catalog/{sku.brand}/{sku.external_id}/1.jpg"
        r = httpx.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert r.content == jpeg_bytes(render_product_image(sku, 1))
        assert catalog_image_path(tmp_path, sku.brand, sku.external_id, 1).read_bytes() == r.content
        assert httpx.get(f"{server.base_url}/catalog/{sku.brand}/XX-999999/0.jpg").status_code == 404
        assert (
            httpx.get(f"{server.base_url}/catalog/{sku.brand}/{sku.external_id}/{sku.n_images}.jpg").status_code == 404
        )
