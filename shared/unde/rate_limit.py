"""The orchestrator's request rate limits: per app key, per shopper and per client address.

A request takes one token from each bucket that applies to it, and only when every one of them
has a token (so a refusal costs nothing):

- the app key's bucket (all shoppers of one app together; a cap on what one key can cost),
- the shopper's bucket (`user_id`; a shopper who sends none is known by the client address),
- the client address's bucket, which rotating `user_id` values cannot escape.

The client address is the TCP peer, unless the peer is a configured trusted proxy
(`TRUSTED_PROXIES`): then it is the right-most address in `CLIENT_ADDRESS_HEADER`
(`X-Forwarded-For`) that is not itself a trusted proxy; what a client writes to the left of
that is never believed. Buckets live in the process: with N pods the cluster-wide limit is N
times each figure.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from starlette.requests import Request

from unde.errors import RateLimited
from unde.settings import OrchestratorSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenBuckets:
    """A token bucket per name: `per_minute` sustained, `burst` at once; least-recent evicted."""

    def __init__(self, per_minute: float, burst: int, *, max_names: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = per_minute / 60.0
        self.burst = float(burst)
        self.max_names = max_names
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def tokens(self, name: str) -> float:
        """Tokens `name` has now (refilled since its last request)."""
        now = self._clock()
        tokens, updated = self._buckets.get(name, (self.burst, now))
        return min(self.burst, tokens + (now - updated) * self.rate_per_s)

    def take(self, name: str) -> None:
        """Spend one token of `name`'s (callers check `tokens` first)."""
        tokens = self.tokens(name)
        self._buckets.pop(name, None)
        self._buckets[name] = (max(0.0, tokens - 1.0), self._clock())
        while len(self._buckets) > self.max_names:
            self._buckets.popitem(last=False)

    def allow(self, name: str) -> bool:
        """Take one token from `name`'s bucket; False (nothing taken) when it is empty."""
        if self.tokens(name) < 1.0:
            return False
        self.take(name)
        return True


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs or single addresses (`10.0.0.0/8`, `127.0.0.1`) as networks; ValueError if bad."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


@dataclass(frozen=True, slots=True)
class ClientAddress:
    """Who is calling: the peer, or what a trusted proxy in front of us says the peer was."""

    trusted_proxies: tuple[Network, ...] = ()
    header: str = "x-forwarded-for"

    def _trusted(self, text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)

    def of(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        if not self.trusted_proxies or not self._trusted(peer):
            return peer
        hops = [hop.strip() for value in request.headers.getlist(self.header)
                for hop in value.split(",")]
        return self.first_untrusted(peer, hops)

    def first_untrusted(self, peer: str, hops: Sequence[str]) -> str:
        """The right-most hop that is not a trusted proxy (the left-most one if all are)."""
        address = peer
        for hop in reversed(hops):
            try:
                address = str(ipaddress.ip_address(hop))
            except ValueError:  # garbage written by the client: stop believing here
                return address
            if not self._trusted(address):
                return address
        return address


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The three bucket sets and how to find the client address."""

    per_key: TokenBuckets
    per_shopper: TokenBuckets
    per_address: TokenBuckets
    address: ClientAddress = ClientAddress()

    def check(self, request: Request, *, app_key: str | None, user_id: str | None) -> None:
        """Admit the request (taking a token from each bucket) or raise RateLimited (429)."""
        client = self.address.of(request)
        buckets = [(self.per_address, client, "this client address"),
                   (self.per_shopper, f"user:{user_id}" if user_id else f"ip:{client}", "this shopper")]
        if app_key:
            buckets.append((self.per_key, app_key, "this app key"))
        for limiter, name, who in buckets:
            if limiter.tokens(name) < 1.0:
                raise RateLimited(f"too many requests from {who}; slow down")
        for limiter, name, _ in buckets:
            limiter.take(name)


def admission_limits(settings: OrchestratorSettings) -> AdmissionLimits:
    """The orchestrator's limits from its settings (names in README, "Rate limits")."""
    return AdmissionLimits(
        per_key=TokenBuckets(settings.rate_limit_key_per_minute, settings.rate_limit_key_burst),
        per_shopper=TokenBuckets(settings.rate_limit_per_minute, settings.rate_limit_burst),
        per_address=TokenBuckets(settings.rate_limit_address_per_minute,
                                 settings.rate_limit_address_burst),
        address=ClientAddress(parse_networks(settings.trusted_proxies),
                              settings.client_address_header.lower()))
