"""Local HTTP servers playing the parts an SSRF attack needs, on real loopback sockets.

- `Victim`: an internal service (not allow-listed) that records every hit; nothing may reach it.
- `Hostile`: an allow-listed image host that misbehaves: redirects anywhere (`/redirect?to=`),
  drips one byte per second (`/drip`), streams an endless body (`/endless`), declares a huge
  Content-Length (`/declared-huge`), sends a gzip bomb (`/gzip-bomb`), and serves a real
  JPEG (`/ok.jpg`, query strings ignored). It counts bytes it managed to send.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = 64 * 1024
ENDLESS_LIMIT = 200 * 1024 * 1024  # what /endless would send if nobody hung up


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Victim:
    """Counts requests by path; answers 200 with a tiny body."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.port = 0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        victim = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                victim.hits[self.path] += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        return Handler


class Hostile:
    """The misbehaving allow-listed image host."""

    def __init__(self, photo: bytes) -> None:
        self.photo = photo
        self.sent: Counter[str] = Counter()
        self.port = 0
        self._bomb = gzip.compress(b"\0" * (50 * 1024 * 1024), compresslevel=9)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _write(self, name: str, data: bytes) -> bool:
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:
                    return False
                hostile.sent[name] += len(data)
                return True

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                route = parts.path
                if route == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", parse_qs(parts.query)["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif route == "/drip":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(hostile.photo)))
                    self.end_headers()
                    for byte in hostile.photo[:30]:
                        if not self._write("drip", bytes([byte])):
                            return
                        time.sleep(1.0)
                elif route == "/endless":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    block = hostile.photo[:3] + b"\0" * (CHUNK - 3)
                    while hostile.sent["endless"] < ENDLESS_LIMIT and self._write("endless", block):
                        block = b"\0" * CHUNK
                elif route == "/declared-huge":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(10 * 1024**3))
                    self.end_headers()
                    self._write("declared-huge", hostile.photo)
                elif route == "/gzip-bomb":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(hostile._bomb)))
                    self.end_headers()
                    self._write("gzip-bomb", hostile._bomb)
                elif route == "/ok.jpg":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(hostile.photo)))
                    self.end_headers()
                    self._write("ok", hostile.photo)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@contextmanager
def serving(role: Victim | Hostile) -> Iterator[None]:
    """Run a role's handler on 127.0.0.1 on a free port (set on `role.port`)."""
    server = _Server(("127.0.0.1", 0), role.handler())
    role.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
