from __future__ import annotations

import ipaddress

import httpx
import pytest

from unde.errors import BadInput, NotAllowed
from unde.fetch import FetchPolicy, Hop, check_url, fetch_bytes, is_public_address

POLICY = FetchPolicy.of(["images.local:8090"], max_bytes=1000, timeout_s=2.0)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.0.12", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "::1",
     "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "fc00::1", "224.0.0.1", "100.64.0.1"],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.jpg", "http://localhost/x.jpg", "http://2130706433/x.jpg",
        "http://0177.0.0.1/x.jpg", "http://0x7f.0.0.1/x.jpg", "http://[::1]/x.jpg",
        "http://[::ffff:127.0.0.1]/x.jpg", "http://169.254.169.254/latest/meta-data",
        "http://10.1.0.12:8001/detect",
    ],
)
async def test_private_targets_in_any_spelling_are_not_allowed(url: str) -> None:
    with pytest.raises(NotAllowed):
        await check_url(url, POLICY)


async def test_allow_list_is_per_host_and_port() -> None:
    # images.local is only allowed on :8090; elsewhere it must resolve publicly (here: not at all).
    with pytest.raises(BadInput, match="cannot resolve"):
        await check_url("http://images.local:9999/x.jpg", POLICY)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x/", "ftp://x/y", "http://u:p@8.8.8.8/"])
async def test_other_schemes_and_credentials_are_not_allowed(url: str) -> None:
    with pytest.raises(NotAllowed):
        await check_url(url, POLICY)


async def test_allow_listed_host_passes_unchanged() -> None:
    assert await check_url("http://images.local:8090/a.jpg", POLICY) == Hop("http://images.local:8090/a.jpg",
                                                                            {}, {})


async def test_public_http_is_pinned_to_the_checked_address() -> None:
    hop = await check_url("http://8.8.8.8:8080/a.jpg?x=1", POLICY)
    assert hop.url == "http://8.8.8.8:8080/a.jpg?x=1"
    assert hop.headers == {"Host": "8.8.8.8:8080", "Connection": "close"} and hop.extensions == {}


def _client(handler: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=handler)


async def test_redirect_to_a_private_address_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest"})

    async with _client(httpx.MockTransport(handler)) as client:
        with pytest.raises(NotAllowed):
            await fetch_bytes(client, "http://images.local:8090/a.jpg", POLICY)


async def test_oversized_body_is_refused_while_streaming() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 5000)

    async with _client(httpx.MockTransport(handler)) as client:
        with pytest.raises(BadInput) as caught:
            await fetch_bytes(client, "http://images.local:8090/a.jpg", POLICY)
    assert caught.value.status_code == 413


async def test_allowed_redirect_is_followed_and_bytes_returned() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old.jpg":
            return httpx.Response(301, headers={"location": "/new.jpg"})
        return httpx.Response(200, content=b"jpeg-bytes")

    async with _client(httpx.MockTransport(handler)) as client:
        assert await fetch_bytes(client, "http://images.local:8090/old.jpg", POLICY) == b"jpeg-bytes"


async def test_http_error_status_is_bad_input() -> None:
    async with _client(httpx.MockTransport(lambda request: httpx.Response(404))) as client:
        with pytest.raises(BadInput, match="HTTP 404"):
            await fetch_bytes(client, "http://images.local:8090/a.jpg", POLICY)


async def test_a_fetch_stops_at_the_requests_remaining_budget() -> None:
    """FETCH_TIMEOUT_S is 2 s here, but the request has 0.3 s left: the fetch gives up then."""
    import asyncio

    from unde import budget
    from unde.errors import UpstreamTimeout

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1.5)
        return httpx.Response(200, content=b"late")

    async def fetch_within(seconds: float) -> None:
        budget.set_current(budget.Deadline(seconds))  # this task's context only
        async with _client(httpx.MockTransport(slow)) as client:
            await fetch_bytes(client, "http://images.local:8090/a.jpg", POLICY)

    with pytest.raises(UpstreamTimeout, match=r"over 0\.30s"):  # the budget's limit, not FETCH_TIMEOUT_S
        await asyncio.create_task(fetch_within(0.3))
