"""Pooled connections expire before the serving side closes them.

The reliability run's 429-storm scenario once lost an answer to `ReadError` on an orchestrator
→ gateway call: httpx kept idle connections for 5 s, while functions-framework's server
(gunicorn + uvicorn workers) closes them after gunicorn's keep-alive, 2 s, so a connection
idle for 2–5 s was reused after the server had closed it.
"""

from __future__ import annotations

import asyncio
import socket

import httpx
from gunicorn.config import Config

from unde.service_client import KEEPALIVE_EXPIRY_S, http_limits


def test_client_keepalive_is_shorter_than_the_function_servers() -> None:
    server_keepalive = Config().keepalive  # functions-framework sets none: gunicorn's default
    assert http_limits().keepalive_expiry == KEEPALIVE_EXPIRY_S < server_keepalive
    assert http_limits(8, 4).max_keepalive_connections == 4


async def test_a_connection_idle_past_the_expiry_is_not_reused() -> None:
    """A server that closes idle connections after 1.5 s: the second call, 1.2 s after the
    first, must open a new connection instead of writing into the closed one."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=1.5)
                if not request:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, family=socket.AF_INET)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(limits=http_limits()) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            await asyncio.sleep(KEEPALIVE_EXPIRY_S + 0.2)
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
        assert connections == 2
    finally:
        server.close()
        await server.wait_closed()
