"""Image URLs go to the address that passed the SSRF check (issue 18, items 3 and 7).

DNS rebinding: a name that resolves to a public address when checked and to a private one
when connected must never reach the private one. https is pinned as http is: the request is
sent to the checked IP with the name kept in `Host` and in the TLS handshake (SNI), where a
real TLS server's certificate for the name is verified. URLs httpx cannot send (CR/LF) are the
caller's problem: 422, not a 500/503.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import trustme

from unde.errors import BadInput
from unde.fetch import FetchPolicy, IPAddress, check_url, fetch_bytes

PUBLIC = ipaddress.ip_address("93.184.216.34")
PRIVATE = ipaddress.ip_address("127.0.0.1")


class Rebinding:
    """A DNS that answers public first and private afterwards (a rebinding attacker's)."""

    def __init__(self) -> None:
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups += 1
        return [PUBLIC] if self.lookups == 1 else [PRIVATE]


def _policy(resolver: Rebinding) -> FetchPolicy:
    return FetchPolicy(frozenset(), max_bytes=10_000, timeout_s=2.0, resolver=resolver)


async def test_https_is_sent_to_the_checked_address_with_the_name_kept() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"image")

    resolver = Rebinding()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        body = await fetch_bytes(client, "https://images.example:8443/a.jpg?sig=1", _policy(resolver))
    assert body == b"image" and resolver.lookups == 1
    (request,) = seen
    assert request.url.host == str(PUBLIC) and request.url.port == 8443
    assert request.headers["host"] == "images.example:8443"
    assert request.extensions["sni_hostname"] == "images.example"
    assert request.headers["connection"] == "close"


async def test_every_redirect_hop_is_pinned_too() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url.host))
        if request.url.path == "/first":
            return httpx.Response(302, headers={"location": "https://images.example/second"})
        return httpx.Response(200, content=b"ok")

    class Public:
        async def __call__(self, host: str, port: int) -> list[IPAddress]:
            return [PUBLIC]

    policy = FetchPolicy(frozenset(), 10_000, 2.0, resolver=Public())
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        assert await fetch_bytes(client, "https://images.example/first", policy) == b"ok"
    assert seen == [str(PUBLIC), str(PUBLIC)]


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[int, trustme.CA]]:
    """A real TLS server on 127.0.0.1 whose certificate names only `images.example`."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("images.example").configure_cert(context)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"host={self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], ca
    server.shutdown()


async def test_pinned_https_verifies_the_certificate_against_the_name(
        tls_server: tuple[int, trustme.CA]) -> None:
    port, ca = tls_server

    class Public:
        async def __call__(self, host: str, port: int) -> list[IPAddress]:
            return [PUBLIC]

    hop = await check_url(f"https://images.example:{port}/a.jpg",
                          FetchPolicy(frozenset(), 10_000, 2.0, resolver=Public()))
    assert hop.url == f"https://{PUBLIC}:{port}/a.jpg"
    # The local server stands in for the public address: same request, sent to where it listens.
    hop = replace(hop, url=hop.url.replace(str(PUBLIC), "127.0.0.1"))
    verify = ssl.create_default_context()
    ca.configure_trust(verify)
    async with httpx.AsyncClient(verify=verify) as client:
        response = await client.get(hop.url, headers=hop.headers, extensions=hop.extensions)
        assert response.text == f"host=images.example:{port}"
        # Without the name in the handshake the certificate does not match the address.
        with pytest.raises(httpx.ConnectError):
            await client.get(hop.url, headers=hop.headers)


@pytest.mark.parametrize("url", ["http://images.example/a\r\nX-Injected: 1", "http://images.example/a\nb.jpg",
                                 "http://images.example/a b.jpg", "http://127.0.0.1:99999/x.jpg",
                                 "http://images.example:abc/x.jpg", "http://[::1/x"])
async def test_urls_httpx_cannot_send_are_bad_input(url: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(BadInput) as caught:
            await fetch_bytes(client, url, FetchPolicy.of(["images.example"], 10_000, 2.0))
    assert caught.value.status_code == 422
