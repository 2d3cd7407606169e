"""Rate limits per app key, per shopper and per client address (issue 18, item 5)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from unde.errors import RateLimited
from unde.rate_limit import AdmissionLimits, ClientAddress, TokenBuckets, parse_networks


def _request(peer: str, headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "path": "/recognize", "headers": raw,
                    "client": (peer, 50000)})


def _limits(*, key: int = 100, shopper: int = 100, address: int = 100,
            trusted: tuple[str, ...] = ()) -> AdmissionLimits:
    clock = lambda: 0.0  # noqa: E731 (no refill: only the bursts count)
    return AdmissionLimits(TokenBuckets(60, key, clock=clock), TokenBuckets(60, shopper, clock=clock),
                           TokenBuckets(60, address, clock=clock),
                           ClientAddress(parse_networks(trusted)))


def _admitted(limits: AdmissionLimits, requests: list[tuple[Request, str | None, str | None]]) -> int:
    admitted = 0
    for request, key, user in requests:
        try:
            limits.check(request, app_key=key, user_id=user)
            admitted += 1
        except RateLimited:
            pass
    return admitted


def test_bucket_refills_and_isolates_names() -> None:
    now = [0.0]
    buckets = TokenBuckets(per_minute=60, burst=2, clock=lambda: now[0])
    assert [buckets.allow("a") for _ in range(3)] == [True, True, False]
    assert buckets.allow("b")  # another name is not affected
    now[0] += 1.0  # one second = one token at 60/min
    assert buckets.allow("a") and not buckets.allow("a")


def test_bucket_memory_is_bounded() -> None:
    buckets = TokenBuckets(per_minute=60, burst=1, max_names=3, clock=lambda: 0.0)
    for name in "abcde":
        buckets.allow(name)
    assert len(buckets._buckets) == 3
    assert buckets.allow("a")  # evicted, so it starts with a full bucket again


def test_rotating_user_ids_does_not_escape_the_address_limit() -> None:
    limits = _limits(shopper=5, address=10)
    attack = [(_request("198.51.100.7"), "app", f"user-{n}") for n in range(30)]
    assert _admitted(limits, attack) == 10
    # Other clients of the same app are still served.
    assert _admitted(limits, [(_request("198.51.100.8"), "app", "someone")]) == 1


def test_anonymous_shoppers_do_not_share_one_bucket() -> None:
    limits = _limits(shopper=3, address=3)
    greedy = [(_request("198.51.100.7"), "app", None) for _ in range(20)]
    assert _admitted(limits, greedy) == 3
    others = [(_request(f"198.51.100.{n}"), "app", None) for n in range(20, 30)]
    assert _admitted(limits, others) == 10


def test_one_shopper_is_limited_across_addresses() -> None:
    limits = _limits(shopper=4, address=100)
    roaming = [(_request(f"198.51.100.{n}"), "app", "shopper-1") for n in range(10)]
    assert _admitted(limits, roaming) == 4


def test_the_app_key_has_its_own_cap() -> None:
    limits = _limits(key=6)
    crowd = [(_request(f"198.51.100.{n}"), "app", f"u{n}") for n in range(10)]
    assert _admitted(limits, crowd) == 6
    assert _admitted(limits, [(_request("198.51.100.99"), "other-app", "u99")]) == 1


def test_a_refusal_spends_no_token() -> None:
    limits = _limits(shopper=1, address=5)
    assert _admitted(limits, [(_request("198.51.100.7"), "app", "s")] * 3) == 1
    # The two refusals did not use the address's tokens: four more shoppers still get in.
    assert _admitted(limits, [(_request("198.51.100.7"), "app", f"t{n}") for n in range(6)]) == 4


def test_forwarded_header_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    spoofed = {"x-forwarded-for": "203.0.113.9"}
    untrusted = ClientAddress(parse_networks(["10.0.0.0/8"]))
    assert untrusted.of(_request("198.51.100.7", spoofed)) == "198.51.100.7"
    assert ClientAddress().of(_request("10.1.2.3", spoofed)) == "10.1.2.3"  # none configured


@pytest.mark.parametrize(("header", "client"), [
    ("203.0.113.9", "203.0.113.9"),
    ("1.2.3.4, 203.0.113.9", "203.0.113.9"),         # what the client wrote on the left is not believed
    ("1.2.3.4, 203.0.113.9, 10.0.0.5", "203.0.113.9"),  # a second trusted hop is skipped
    ("garbage, 203.0.113.9", "203.0.113.9"),
    ("203.0.113.9, garbage", "10.9.9.9"),             # unparsable right-most hop: the peer counts
])
def test_trusted_proxy_header_gives_the_right_most_untrusted_hop(header: str, client: str) -> None:
    address = ClientAddress(parse_networks(["10.0.0.0/8"]))
    assert address.of(_request("10.9.9.9", {"x-forwarded-for": header})) == client


def test_clients_behind_a_trusted_proxy_get_their_own_buckets() -> None:
    limits = _limits(shopper=100, address=2, trusted=("10.0.0.0/8",))
    behind = [(_request("10.0.0.1", {"x-forwarded-for": f"203.0.113.{n % 5}"}), "app", f"u{n}")
              for n in range(20)]
    assert _admitted(limits, behind) == 10  # five clients, two each; not two for the proxy
