"""A small local fake of the embedder function speaking `POST /embed` on a real socket.

It maps an image to a vector by its mean colour: the nearest registered anchor colour's vector
(tests script which crop embeds where), so re-encoding a crop does not change its vector.
`down = True` makes it answer 503 like an embedder without a model.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

MODEL_VERSION = "fake-clip-1"


class FakeEmbedder:
    def __init__(self) -> None:
        self.anchors: list[tuple[tuple[int, int, int], list[float]]] = []
        self.down = False
        self.calls = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def anchor(self, colour: tuple[int, int, int], vector: np.ndarray) -> None:
        self.anchors.append((colour, [float(v) for v in vector]))

    def __enter__(self) -> FakeEmbedder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _vector(self, data: bytes) -> list[float]:
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
        mean = pixels.reshape(-1, 3).mean(axis=0)
        return min(self.anchors, key=lambda a: float(np.sum((np.array(a[0]) - mean) ** 2)))[1]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                fake.calls += 1
                body: dict[str, object]
                if fake.down or self.path != "/embed":
                    status, body = 503, {"error": "upstream_unavailable", "message": "no model"}
                else:
                    image = json.loads(raw)["image"]
                    status, body = 200, {"embedding": fake._vector(base64.b64decode(image["base64"])),
                                         "model_version": MODEL_VERSION, "ms": 1.0}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
