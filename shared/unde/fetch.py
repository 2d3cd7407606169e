"""Fetching images by URL without becoming an SSRF proxy.

Rules: only http/https; the host must resolve to public addresses only, unless it is on the
allow-list (`ALLOWED_IMAGE_HOSTS`, e.g. the local image server or the catalog's S3 host);
redirects are followed by hand (at most 3) and every hop is checked again; the body is
streamed with a byte limit and the whole fetch has one deadline. For plain http the request
is sent to the address that was checked (no second DNS lookup to rebind).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from unde import budget
from unde.errors import BadInput, NotAllowed, UpstreamError, UpstreamTimeout
from unde.http import collect_limited
from unde.settings import CommonSettings

MAX_REDIRECTS = 3
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """All addresses a host name resolves to (literal IPs in any spelling included)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BadInput(f"cannot resolve host {host!r}", field="url") from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """What may be fetched: allow-listed hosts, size and time limits."""

    allowed_hosts: frozenset[str] = frozenset()
    max_bytes: int = 15 * 1024 * 1024
    timeout_s: float = 5.0
    resolver: Resolver = field(default=resolve_host, compare=False)  # DNS (tests: a fake one)

    @classmethod
    def of(cls, allowed_hosts: Iterable[str], max_bytes: int, timeout_s: float) -> FetchPolicy:
        return cls(frozenset(host.lower() for host in allowed_hosts), max_bytes, timeout_s)

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> FetchPolicy:
        """ALLOWED_IMAGE_HOSTS, IMAGE_MAX_BYTES, FETCH_TIMEOUT_S of any function's settings."""
        return cls.of(settings.allowed_image_hosts, settings.image_max_bytes, settings.fetch_timeout_s)

    def host_allowed(self, host: str, port: int | None) -> bool:
        host = host.lower()
        return host in self.allowed_hosts or f"{host}:{port}" in self.allowed_hosts


#: IPv6 ranges that carry an IPv4 address in their low 32 bits: IPv4-compatible (::/96,
#: deprecated), NAT64 (64:ff9b::/96, RFC 6052) and SIIT IPv4-translated (::ffff:0:0:0/96).
#: Python calls them global, but they lead to the embedded IPv4 address, which is what counts.
_EMBEDS_IPV4 = (ipaddress.IPv6Network("::/96"), ipaddress.IPv6Network("64:ff9b::/96"),
                ipaddress.IPv6Network("::ffff:0:0:0/96"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:  # 2002::/16
        return address.sixtofour
    if address.teredo is not None:  # 2001::/32: the client's obfuscated address
        return ipaddress.IPv4Address(int(address.teredo[1]))
    if any(address in network for network in _EMBEDS_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """True for globally routable unicast addresses; IPv6 forms that embed an IPv4 address
    (mapped, compatible, NAT64, 6to4, Teredo) are judged by that IPv4 address as well."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not is_public_address(embedded):
            return False
        if address.ipv4_mapped is not None:
            return True
    return address.is_global and not address.is_multicast


def url_syntax_problem(url: str) -> str | None:
    """Why `url` cannot be requested as written (bad port, unclosed bracket, whitespace or
    control characters, which `urlsplit` silently drops but httpx refuses), or None.

    Host spellings httpx refuses (`0177.0.0.1`) are left to the SSRF check, which names
    them as not allowed; any other URL httpx will not send is caught where it is sent.
    """
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        return "URL must not contain whitespace or control characters"
    try:
        urlsplit(url).port  # noqa: B018 (reading it validates it)
    except ValueError as exc:
        return f"URL is malformed: {exc}"
    return None


def _split(url: str) -> tuple[str, str, int]:
    problem = url_syntax_problem(url)
    if problem is not None:
        raise BadInput(problem, field="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise NotAllowed(f"URL scheme {parts.scheme!r} is not allowed; use http or https",
                         field="url")
    if not parts.hostname:
        raise BadInput("URL has no host", field="url")
    if parts.username or parts.password:
        raise NotAllowed("URLs with credentials are not allowed", field="url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise BadInput(f"URL has an invalid port: {exc}", field="url") from exc
    return parts.scheme, parts.hostname, port


@dataclass(frozen=True, slots=True)
class Hop:
    """One request to send: the URL (the checked address in place of the name when pinned),
    extra headers and httpx request extensions (the TLS server name when pinned)."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, str]


async def check_url(url: str, policy: FetchPolicy) -> Hop:
    """Validate one hop and pin it to the address that passed the check.

    The request then goes to that address, never through a second DNS lookup that could be
    rebound to a private one: the `Host` header keeps the name, and for https httpx's
    `sni_hostname` extension keeps it in the TLS handshake, where the certificate is verified
    against it. Pinned requests close their connection (`Connection: close`): the pool keys
    connections by address, and one verified for a name must not serve another name.
    """
    scheme, host, port = _split(url)
    if policy.host_allowed(host, port):
        return Hop(url, {}, {})
    addresses = await policy.resolver(host, port)
    blocked = [str(address) for address in addresses if not is_public_address(address)]
    if blocked or not addresses:
        raise NotAllowed(
            f"URL host {host!r} resolves to a non-public address ({', '.join(blocked)})",
            field="url",
        )
    parts = urlsplit(url)
    literal = addresses[0]
    netloc_host = f"[{literal}]" if literal.version == 6 else str(literal)
    pinned = urlunsplit(parts._replace(netloc=f"{netloc_host}:{port}"))
    headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Connection": "close"}
    return Hop(pinned, headers, {"sni_hostname": host} if scheme == "https" else {})


async def fetch_bytes(client: httpx.AsyncClient, url: str, policy: FetchPolicy,
                      *, headers: dict[str, str] | None = None) -> bytes:
    """GET an image under the policy, within FETCH_TIMEOUT_S and the request's remaining budget;
    BadInput/NotAllowed for the caller's URL problems."""
    limit = budget.current().within(policy.timeout_s).remaining()
    try:
        async with asyncio.timeout(limit):
            return await _follow(client, url, policy, headers or {})
    except TimeoutError as exc:
        raise UpstreamTimeout("image-fetch", f"fetching the image took over {limit:.2f}s") from exc


async def _follow(client: httpx.AsyncClient, url: str, policy: FetchPolicy,
                  headers: dict[str, str]) -> bytes:
    for _ in range(MAX_REDIRECTS + 1):
        hop = await check_url(url, policy)
        try:
            async with client.stream("GET", hop.url, headers={**headers, **hop.headers},
                                     extensions=hop.extensions, follow_redirects=False) as response:
                if response.status_code in REDIRECT_CODES:
                    location = response.headers.get("location")
                    if not location:
                        raise UpstreamError("image-fetch", "redirect without Location")
                    url = urljoin(url, location)
                    continue
                if response.status_code >= 400:
                    raise BadInput(f"image URL answered HTTP {response.status_code}", field="url")
                return await _read_limited(response, policy.max_bytes)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("image-fetch") from exc
        except httpx.InvalidURL as exc:  # not an HTTPError: a URL httpx refuses to send
            raise BadInput(f"image URL is malformed: {exc}", field="url") from exc
        except httpx.HTTPError as exc:
            raise BadInput(f"image URL could not be fetched: {exc.__class__.__name__}",
                           field="url") from exc
    raise NotAllowed(f"more than {MAX_REDIRECTS} redirects", field="url")


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadInput(f"image at URL exceeds {limit} bytes", field="url", status_code=413)
    return await collect_limited(response.aiter_bytes(), limit, what="image at URL", field="url")
