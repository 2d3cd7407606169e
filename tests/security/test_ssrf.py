"""SSRF matrix through the real endpoints: nothing internal is ever fetched.

Every function that fetches a URL (embedder `/embed`, gateway `/detect` and `/search`, reranker
`/tag` and `/rerank` with Gemini) is given URLs that point at an internal "victim" server on
loopback (every spelling of 127.0.0.1 and ::1, `localhost`), private, link-local and metadata
addresses, IPv6 forms embedding IPv4, other schemes, credentials, and redirects from an
allow-listed host to all of these. Each must be refused as `url_not_allowed` (422) without the
victim seeing a request. The allow-listed host also drips, streams endlessly, declares a huge
length and sends a gzip bomb: each fetch stops at its deadline or byte limit.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.contracts.apps import Target, running
from tests.contracts.conftest import database_urls
from tests.contracts.fuzz import B64_JPEG, jpeg
from tests.fakes.gemini_server import API_KEY, fake_gemini
from tests.security.servers import ENDLESS_LIMIT, Hostile, Victim, serving

FETCH_TIMEOUT_S = 2.0
MAX_BYTES = 300_000
PHOTO = jpeg((120, 160))


@pytest.fixture(scope="module")
def victim() -> Iterator[Victim]:
    role = Victim()
    with serving(role):
        yield role


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    role = Hostile(PHOTO)
    with serving(role):
        yield role


def internal_urls(port: int) -> list[str]:
    """URLs that reach (or would reach) something internal."""
    loopback = [f"http://{host}:{port}/secret" for host in (
        "127.0.0.1", "localhost", "LocalHost", "127.1", "127.0.1", "2130706433", "0x7f000001",
        "0x7f.0.0.1", "0177.0.0.1", "017700000001", "0.0.0.0", "0", "[::1]", "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]", "[::127.0.0.1]", "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]", "[::]")]
    elsewhere = [
        "http://169.254.169.254/latest/meta-data/iam/", "http://[fd00:ec2::254]/latest/",
        "http://metadata.google.internal/computeMetadata/v1/", "http://[fe80::1]/", "http://10.0.0.1/",
        "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/", "http://[fd12:3456::1]/",
        "http://224.0.0.1/", "http://255.255.255.255/", "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/", "http://0xa9fea9fe/", "http://2852039166/",
    ]
    schemes = [
        "file:///etc/passwd", f"gopher://127.0.0.1:{port}/_GET%20/secret", "ftp://127.0.0.1/x",
        "dict://127.0.0.1:11211/stat", "ldap://127.0.0.1/", "data:image/jpeg;base64,/9j/",
        "jar:http://127.0.0.1/!/", "//127.0.0.1/x", "http:/127.0.0.1/x",
        f"http://user:pw@127.0.0.1:{port}/secret", f"http://example.com@127.0.0.1:{port}/secret",
    ]
    return loopback + elsewhere + schemes


def redirect_urls(hostile: Hostile, port: int) -> list[str]:
    """Allow-listed host redirecting to internal targets (and a loop past the hop limit)."""
    targets = [f"http://127.0.0.1:{port}/secret", f"http://localhost:{port}/secret",
               "http://169.254.169.254/latest/meta-data/", f"http://[::ffff:127.0.0.1]:{port}/secret",
               "file:///etc/passwd", f"gopher://127.0.0.1:{port}/_x"]
    urls = [hostile.url(f"/redirect?to={quote(t, safe='')}") for t in targets]
    loop = hostile.url("/ok.jpg")
    for _ in range(5):
        loop = hostile.url(f"/redirect?to={quote(loop, safe='')}")
    return [*urls, loop]


#: How each function is asked to fetch a URL: (function, path, body builder, refused with 422).
#: The reranker's candidate photos are fetched best-effort: a refused one is skipped (200).
CALLS: list[tuple[str, str, Any, bool]] = [
    ("embedder", "/embed", lambda url: {"image": {"url": url}}, True),
    ("embedder", "/embed", lambda url: {"images": [{"url": url}]}, True),
    ("vision_gateway", "/detect", lambda url: {"url": url}, True),
    ("vision_gateway", "/search", lambda url: {"image": {"url": url}, "top_k": 3}, True),
    ("llm_reranker", "/tag", lambda url: {"url": url}, True),
    ("llm_reranker", "/rerank", lambda url: {"crop_url": url, "candidates": [
        {"brand": "b", "external_id": "x", "score": 0.5}]}, True),
    ("llm_reranker", "/rerank", lambda url: {"image": {"base64": B64_JPEG}, "candidates": [
        {"brand": "b", "external_id": "x", "score": 0.5, "image_urls": [url]}]}, False),
]
FUNCTIONS = sorted({name for name, *_ in CALLS})


@pytest.fixture
async def fetcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                  hostile: Hostile) -> AsyncIterator[Target]:
    """The function under test with the hostile host allow-listed (reranker: Gemini mode)."""
    production_url, staging_url = database_urls(request, request.param)
    env = {"ALLOWED_IMAGE_HOSTS": hostile.host, "FETCH_TIMEOUT_S": str(FETCH_TIMEOUT_S),
           "IMAGE_MAX_BYTES": str(MAX_BYTES)}
    if request.param != "llm_reranker":
        async with running(request.param, monkeypatch, production_url=production_url,
                           staging_url=staging_url, tmp_path=tmp_path, env=env) as target:
            yield target
        return
    with fake_gemini() as (_, gemini_url):
        env.update(RERANK_PROVIDER="gemini", GEMINI_API_KEY=API_KEY, GEMINI_API_URL=f"{gemini_url}/v1beta",
                   GEMINI_MAX_RETRIES="0")
        async with running(request.param, monkeypatch, production_url=production_url,
                           staging_url=staging_url, tmp_path=tmp_path, env=env) as target:
            yield target


async def _post(target: Target, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
    started = time.perf_counter()
    response = await target.client.post(path, json=body, headers=target.headers)
    return response.status_code, response.json(), time.perf_counter() - started


@pytest.mark.parametrize("fetcher", FUNCTIONS, indirect=True)
async def test_internal_targets_are_refused_and_never_reached(fetcher: Target, victim: Victim,
                                                              hostile: Hostile) -> None:
    victim.hits.clear()
    urls = internal_urls(victim.port) + redirect_urls(hostile, victim.port)
    failures = []
    for name, path, build, refused in CALLS:
        if name != fetcher.name:
            continue
        for url in urls:
            status, body, _ = await _post(fetcher, path, build(url))
            message = str(body.get("message", ""))
            tried = "could not be fetched" in message or "answered HTTP" in message
            if (status != 422 if refused else status >= 500) or tried:
                failures.append((path, url, status, body))
    assert not failures, "\n".join(map(str, failures))
    assert victim.hits == {}, f"the victim was reached: {dict(victim.hits)}"


@pytest.mark.parametrize("fetcher", FUNCTIONS, indirect=True)
async def test_allow_listed_host_still_works(fetcher: Target, hostile: Hostile) -> None:
    """The guard is not simply refusing everything: a signed allow-listed URL is fetched."""
    for name, path, build, _ in CALLS:
        if name == fetcher.name:
            status, body, _ = await _post(fetcher, path, build(hostile.url("/ok.jpg?X-Amz-Signature=abc")))
            assert status == 200, (path, body)


@pytest.mark.parametrize("fetcher", ["embedder", "vision_gateway"], indirect=True)
async def test_slow_drip_stops_at_the_deadline(fetcher: Target, hostile: Hostile) -> None:
    path = "/embed" if fetcher.name == "embedder" else "/detect"
    status, body, seconds = await _post(fetcher, path, {"image": {"url": hostile.url("/drip")}})
    assert status == 504 and body["error"] == "upstream_timeout", body
    assert seconds < FETCH_TIMEOUT_S * 3  # the whole image would take 30 s at this rate
    assert hostile.sent["drip"] < 10


@pytest.mark.parametrize("fetcher", ["embedder", "vision_gateway"], indirect=True)
async def test_oversized_bodies_stop_at_the_byte_limit(fetcher: Target, hostile: Hostile) -> None:
    path = "/embed" if fetcher.name == "embedder" else "/detect"
    hostile.sent.clear()
    for route in ("/endless", "/declared-huge", "/gzip-bomb"):
        status, body, _ = await _post(fetcher, path, {"image": {"url": hostile.url(route)}})
        assert status == 413 and body["field"] == "url", (route, body)
    # The endless stream was cut off near the limit (socket buffers hold a few MB at most).
    assert hostile.sent["endless"] < ENDLESS_LIMIT // 10, hostile.sent
