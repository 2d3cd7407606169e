"""Peak memory of a real function process decoding the largest image it accepts (issue 18, item 4).

The attack: a 154 KB all-zero 6300×6300 RGBA PNG drove one request to ≈ 900–990 MB of RSS
(full-size copies in `to_rgb`, `convert("RGBA")` twice). Here the function runs as its own
process (functions-framework, as in the container); a max-size all-zero RGBA PNG at its
IMAGE_MAX_PIXELS is sent once, then `containerConcurrency` of them at once, and the process's
peak RSS (VmHWM of the serving process, gunicorn's worker included) is read from /proc.

Targets: one image raises the peak by at most ≈ 2× its decoded RGB size, and N concurrent stay
inside the chart's memory limit. Pillow holds an RGB image as 4 bytes a pixel (RGBX), so the
decoded RGB size is 4 bytes × pixels; compositing an RGBA PNG (which Pillow cannot decode
reduced) needs the RGBA frame and the RGB result at once: 8 bytes a pixel, 2× — the floor.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from unde.settings import REPO_ROOT

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
ONE_IMAGE_FACTOR = 2.1  # × the decoded RGB size (see the module docstring)
PILLOW_RGB_BYTES = 4  # bytes a pixel of a decoded RGB image in Pillow's memory


@dataclass(frozen=True)
class Sized:
    """A function as the chart runs it (helm values.yaml): pixel budget, concurrency, memory
    limit, and what it holds in production besides (catalog vectors, model sessions)."""

    name: str
    max_pixels: int
    concurrency: int
    limit_mib: int
    resident_mib: int
    path: str


FUNCTIONS = [  # resident: what production holds that this test's process does not
    Sized("embedder", 40_000_000, 4, 4096, 1024, "/embed"),  # FashionCLIP sessions (≈ 600 MiB)
    Sized("vision_gateway", 12_500_000, 10, 1024, 0, "/detect"),  # no catalog data (issue 16)
    Sized("llm_reranker", 16_000_000, 10, 1024, 0, "/tag"),
]


def rgba_png(width: int, height: int) -> bytes:
    """An all-zero (transparent black) RGBA PNG, written row by row so the test stays small."""
    raw = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (4 * width)
    chunks = [raw.compress(row) for _ in range(height)]
    data = b"".join(chunks) + raw.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 6, 0, 0, 0])
    out = io.BytesIO()
    out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return out.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _family(pid: int) -> list[int]:
    """`pid` and all its descendants (gunicorn runs the app in a worker process)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in children:
            found.extend(_family(int(child)))
    return found


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def peak_rss_mib(pid: int) -> float:
    """The largest VmHWM among the process and its descendants (the serving worker's)."""
    return max(_status_kib(p, "VmHWM") for p in _family(pid)) / 1024


@pytest.fixture
def function_process(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Sized, str, int]]:
    """The function running as its own process; databases point nowhere (its pools open
    empty, and the measured paths do not query them)."""
    sized: Sized = request.param
    port = _free_port()
    nowhere = "postgresql://127.0.0.1:9/none"
    env = {**os.environ, "PORT": str(port), "EMBED_PROVIDER": "local", "DATA_DIR": str(tmp_path),
           "UNDE_SECRETS_DIR": "/nonexistent", "IMAGE_MAX_PIXELS": str(sized.max_pixels),
           "INTRA_OP_THREADS": "1", "LOG_LEVEL": "WARNING", "DETECT_PROVIDER": "local",
           "TAG_PROVIDER": "local", "RERANK_PROVIDER": "local", "SEARCH_BACKEND": "pgvector",
           "PRODUCTION_DB_URL": nowhere, "STAGING_DB_URL": nowhere,
           "EMBEDDER_URL": "http://127.0.0.1:9"}
    for key in ("INTERNAL_TOKEN", "XIMILAR_API_TOKEN", "GEMINI_API_KEY"):
        env.pop(key, None)
    source = REPO_ROOT / "functions" / sized.name / "main.py"
    process = subprocess.Popen(
        [sys.executable, "-m", "functions_framework", "--target", "handle", "--source", str(source),
         "--asgi", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("wb"),
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise AssertionError((tmp_path / "log").read_text()[-2000:])
        yield sized, url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def _post(url: str, data: bytes) -> int:
    response = httpx.post(url, content=data, headers={"content-type": "image/png"}, timeout=120)
    assert response.status_code == 200, response.text[:300]
    return response.status_code


@pytest.mark.parametrize("function_process", FUNCTIONS, ids=[f.name for f in FUNCTIONS], indirect=True)
def test_peak_rss_for_max_size_images(function_process: tuple[Sized, str, int]) -> None:
    sized, url, pid = function_process
    side = int(sized.max_pixels ** 0.5)
    image = rgba_png(side, side)
    rgb_mib = side * side * PILLOW_RGB_BYTES / MIB
    _post(url + sized.path, rgba_png(640, 480))  # warm: model, code paths, thread pool
    before = peak_rss_mib(pid)
    _post(url + sized.path, image)
    one = peak_rss_mib(pid) - before
    with ThreadPoolExecutor(sized.concurrency) as pool:
        list(pool.map(lambda _: _post(url + sized.path, image), range(sized.concurrency)))
    concurrent = peak_rss_mib(pid) - before
    in_production = before + sized.resident_mib + concurrent
    print(f"\n{sized.name}: {side}x{side} RGBA PNG ({len(image) / 1024:.0f} KiB), Pillow RGB {rgb_mib:.0f} MiB; "
          f"warm peak {before:.0f} MiB; one image +{one:.0f} MiB ({one / rgb_mib:.2f}x); "
          f"{sized.concurrency} at once +{concurrent:.0f} MiB; with {sized.resident_mib} MiB resident: "
          f"{in_production:.0f} of {sized.limit_mib} MiB")
    assert one <= ONE_IMAGE_FACTOR * rgb_mib
    assert in_production < sized.limit_mib
