"""The Ximilar client against the fake server: wire format, retries, faults, breaker, credits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.fakes.ximilar_server import FakeXimilar
from tests.gateway.conftest import jpeg, make_client
from unde import budget
from unde.budget import BudgetSpent, Deadline
from unde.errors import ProviderMisconfigured, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from unde.metrics import CIRCUIT_STATE, XIMILAR_CREDITS
from unde.providers.ximilar import BreakerState, CreditMeter, TokenBucket, XimilarMalformed, wire
from unde.providers.ximilar import mapping as xmap
from unde.providers.ximilar.wire import DETECT_TAGS_PATH, SEARCH_PATH, TAGS_PATH


async def test_detect_tags_speaks_the_wire_format(fake_ximilar: FakeXimilar,
                                                  http: httpx.AsyncClient) -> None:
    photo = jpeg((200, 30, 30), size=(200, 300))
    fake_ximilar.add_ground_truth(photo, [
        {"bbox": [10, 20, 150, 140], "category": "outerwear", "product_type": "bomber_jacket",
         "colour": "grey", "pattern": "solid", "material": "nylon ripstop"},
        {"bbox": [20, 150, 140, 290], "category": "bottom", "product_type": "jeans",
         "colour": "blue", "pattern": "solid", "material": "denim"},
    ])
    client = make_client(fake_ximilar, http)
    result = await client.detect_tags([photo])

    seen = fake_ximilar.requests(DETECT_TAGS_PATH)[0]
    assert seen.headers["Authorization"] == "Token fake-ximilar-token"
    assert list(seen.body) == ["records"] and "_base64" in seen.body["records"][0]
    image = result.value[0]
    assert (image.width, image.height) == (200, 300)
    jacket, jeans = image.objects
    assert jacket.bbox == (10, 20, 150, 140)
    subcategory = jacket.tags["Subcategory"][0].name
    assert xmap.garment_type(subcategory) == "bomber_jacket"
    assert xmap.garment_category(subcategory, jacket.name) == "outerwear"
    assert xmap.colour_name(jacket.tags["Color"][0].name) == "grey"  # Ximilar says "gray"
    assert xmap.garment_category(jeans.tags["Subcategory"][0].name, jeans.name) == "bottom"
    assert result.credits == 5


async def test_batches_of_ten_and_credits_per_item(fake_ximilar: FakeXimilar,
                                                   http: httpx.AsyncClient) -> None:
    client = make_client(fake_ximilar, http)
    before = XIMILAR_CREDITS.labels("tag")._value.get()
    images = [jpeg((10 * i, 100, 100)) for i in range(23)]
    result = await client.tags(images)
    sizes = sorted(len(seen.body["records"]) for seen in fake_ximilar.requests(TAGS_PATH))
    assert sizes == [3, 10, 10]
    assert len(result.value) == 23 and result.credits == 23 * 15
    assert client.credits_spent["tag"] == 345
    assert XIMILAR_CREDITS.labels("tag")._value.get() - before == 345


async def test_search_over_inserted_collection(fake_ximilar: FakeXimilar,
                                               http: httpx.AsyncClient) -> None:
    client = make_client(fake_ximilar, http)
    red, blue = jpeg((200, 20, 20), stripe=(250, 250, 250)), jpeg((20, 20, 200))
    import base64
    await client.insert([
        {"_id": "acme/R1/0", "_base64": base64.b64encode(red).decode(), "brand": "acme",
         "external_id": "R1"},
        {"_id": "zeta/B1/0", "_base64": base64.b64encode(blue).decode(), "brand": "zeta",
         "external_id": "B1"},
    ])
    assert sorted(await client.all_ids()) == ["acme/R1/0", "zeta/B1/0"]
    answer = await client.search(red, k=5, fields=["brand", "external_id"])
    assert answer.credits == 10
    assert answer.value.records[0]["external_id"] == "R1"
    assert answer.value.distances[0] == pytest.approx(0.0, abs=0.02)
    seen = fake_ximilar.requests(SEARCH_PATH)[-1]
    assert seen.headers["collection-id"] == "fake-collection"
    assert set(seen.body) == {"query_record", "k", "fields_to_return"}
    filtered = await client.search(red, k=5, fields=["brand"], filter_={"brand": {"$in": ["zeta"]}})
    assert [r["_id"] for r in filtered.value.records] == ["zeta/B1/0"]
    await client.delete(["zeta/B1/0"])
    assert await client.all_ids() == ["acme/R1/0"]


async def test_429_is_retried_then_succeeds(fake_ximilar: FakeXimilar,
                                            http: httpx.AsyncClient) -> None:
    fake_ximilar.fail_next("429", times=2)
    client = make_client(fake_ximilar, http, max_retries=2)
    result = await client.tags([jpeg((1, 2, 3))])
    assert len(result.value) == 1
    assert client.attempts == 3
    assert client.breaker.state is BreakerState.CLOSED


async def test_500_exhausts_retries(fake_ximilar: FakeXimilar, http: httpx.AsyncClient) -> None:
    fake_ximilar.fail_next("500", times=10)
    client = make_client(fake_ximilar, http, max_retries=2)
    with pytest.raises(UpstreamUnavailable, match="HTTP 500"):
        await client.tags([jpeg((1, 2, 3))])
    assert client.attempts == 3
    assert client.credits_spent["tag"] == 0


async def test_401_is_a_configuration_error_not_retried(fake_ximilar: FakeXimilar,
                                                        http: httpx.AsyncClient) -> None:
    client = make_client(fake_ximilar, http, token="wrong")
    with pytest.raises(ProviderMisconfigured, match="XIMILAR_API_TOKEN"):
        await client.detect_tags([jpeg((1, 2, 3))])
    assert client.attempts == 1
    assert client.breaker.state is BreakerState.CLOSED


async def test_timeout_is_retried_then_reported(fake_ximilar: FakeXimilar,
                                                http: httpx.AsyncClient) -> None:
    fake_ximilar.fail_next("slow", times=2, slow_s=1.0)
    client = make_client(fake_ximilar, http, timeout_s=0.2, max_retries=1)
    with pytest.raises(UpstreamTimeout):
        await client.tags([jpeg((1, 2, 3))])
    assert client.attempts == 2


async def test_malformed_body_is_an_upstream_error(fake_ximilar: FakeXimilar,
                                                   http: httpx.AsyncClient) -> None:
    client = make_client(fake_ximilar, http)
    fake_ximilar.fail_next("malformed")
    with pytest.raises(XimilarMalformed, match="not JSON"):
        await client.tags([jpeg((1, 2, 3))])
    fake_ximilar.fail_next("shape")
    with pytest.raises(XimilarMalformed, match="expected 1 records"):
        await client.tags([jpeg((1, 2, 3))])
    fake_ximilar.fail_next("shape", path=SEARCH_PATH)
    with pytest.raises(XimilarMalformed, match="answer_records"):
        await client.search(jpeg((1, 2, 3)), k=3, fields=[])
    assert client.attempts == 3  # malformed answers are not retried


async def test_status_code_inside_a_200(fake_ximilar: FakeXimilar, http: httpx.AsyncClient) -> None:
    client = make_client(fake_ximilar, http, max_retries=0)
    fake_ximilar.fail_next("status", code=400)
    with pytest.raises(UpstreamError, match=r"status\.code 400"):
        await client.tags([jpeg((1, 2, 3))])
    fake_ximilar.fail_next("record_status", code=400)
    with pytest.raises(UpstreamError, match=r"records\[0\]._status.code 400"):
        await client.detect_tags([jpeg((1, 2, 3))])
    retrying = make_client(fake_ximilar, http, max_retries=1)
    fake_ximilar.fail_next("status", code=503)
    assert len((await retrying.tags([jpeg((1, 2, 3))])).value) == 1  # 503 in a 200 is retried


async def test_breaker_opens_fails_fast_then_half_opens_and_closes(
        fake_ximilar: FakeXimilar, http: httpx.AsyncClient) -> None:
    client = make_client(fake_ximilar, http, max_retries=0, failures=3, cooldown_s=0.3)
    fake_ximilar.fail_next("500", times=3)
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable, match="HTTP 500"):
            await client.tags([jpeg((1, 2, 3))])
    assert client.breaker.state is BreakerState.OPEN
    assert CIRCUIT_STATE.labels("ximilar-test")._value.get() == 1.0
    with pytest.raises(UpstreamUnavailable, match="circuit open"):
        await client.tags([jpeg((1, 2, 3))])
    assert client.attempts == 3  # the open circuit sent nothing
    await asyncio.sleep(0.35)
    assert client.breaker.state is BreakerState.HALF_OPEN
    fake_ximilar.fail_next("500")
    with pytest.raises(UpstreamUnavailable, match="HTTP 500"):
        await client.tags([jpeg((1, 2, 3))])  # the probe fails: open again
    assert client.breaker.state is BreakerState.OPEN
    await asyncio.sleep(0.35)
    await client.tags([jpeg((1, 2, 3))])  # the probe succeeds: closed
    assert client.breaker.state is BreakerState.CLOSED
    assert CIRCUIT_STATE.labels("ximilar-test")._value.get() == 0.0


async def test_rate_limiter_spaces_requests(fake_ximilar: FakeXimilar,
                                            http: httpx.AsyncClient) -> None:
    client = make_client(fake_ximilar, http, rate_per_s=20.0)
    client.limiter = TokenBucket(20.0, burst=1.0)
    await asyncio.gather(*(client.tags([jpeg((i, 2, 3))]) for i in range(6)))
    arrivals = sorted(seen.at for seen in fake_ximilar.requests(TAGS_PATH))
    # A lower bound only (never flaky when the machine is slow): 6 requests at 20/s with a
    # burst of 1 cannot arrive within less than 5 spacings of 50 ms.
    assert arrivals[-1] - arrivals[0] >= 5 * 0.05 * 0.9


async def test_token_bucket_counts_on_a_simulated_clock() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(10.0, burst=5.0, clock=lambda: now[0], sleep=sleep)
    granted = []
    for _ in range(35):
        await bucket.acquire()
        granted.append(now[0])
    # The burst goes at once, then exactly one token per 100 ms.
    assert granted[:5] == [0.0] * 5
    assert granted[5:] == pytest.approx([0.1 * k for k in range(1, 31)])
    # Counting per window: no one-second window ever holds more than burst + rate grants.
    for start in granted:
        assert sum(start <= t < start + 1.0 for t in granted) <= 15
    assert bucket.waited_s == pytest.approx(3.0)


async def test_fake_answers_detection_from_a_ground_truth_file(
        tmp_path: Path, http: httpx.AsyncClient) -> None:
    photo = jpeg((90, 90, 90), size=(120, 160))
    (tmp_path / "street-0.jpg").write_bytes(photo)
    (tmp_path / "ground_truth.json").write_text(json.dumps({"version": 1, "photos": [
        {"photo_id": "street-0", "file": "street-0.jpg", "items": [
            {"bbox": [10, 10, 110, 80], "category": "top", "product_type": "hoodie",
             "colour": "grey", "pattern": "striped", "material": "cotton"}]}]}))
    with FakeXimilar(street_dir=tmp_path) as fake:
        result = await make_client(fake, http).detect_tags([photo])
    (obj,) = result.value[0].objects
    assert xmap.garment_type(obj.tags["Subcategory"][0].name) == "hoodie"
    assert xmap.pattern_name(obj.tags["Design"][0].name) == "striped"


async def test_a_slow_ximilar_is_cut_at_the_deadline_and_billed(fake_ximilar: FakeXimilar,
                                                                http: httpx.AsyncClient) -> None:
    """6 s answers against a 5 s client time-out (issue 18, item 8), scaled down: the call stops
    with the deadline instead of making every retry, and the attempt that timed out after it
    was sent is counted as billed."""
    fake_ximilar.fail_next("slow", times=5, slow_s=1.5)
    client = make_client(fake_ximilar, http, timeout_s=1.0, max_retries=2)
    meter = CreditMeter()
    before = client.credits_spent["detect"]
    with pytest.raises(UpstreamTimeout):
        await client.detect_tags([jpeg((1, 2, 3))], deadline=Deadline(1.2), meter=meter)
    assert len(fake_ximilar.requests(DETECT_TAGS_PATH)) == 1  # no retry: it could not finish in time
    assert meter.credits == 5 and client.credits_spent["detect"] - before == 5


async def test_the_request_budget_bounds_a_call_without_a_deadline(fake_ximilar: FakeXimilar,
                                                                   http: httpx.AsyncClient) -> None:
    fake_ximilar.fail_next("slow", times=5, slow_s=1.5)
    client = make_client(fake_ximilar, http, timeout_s=5.0, max_retries=2)
    budget.set_current(Deadline(0.5))
    with pytest.raises(UpstreamTimeout, match=r"took over 0\.[45]"):
        await client.search(jpeg((1, 2, 3)), k=3, fields=["_id"])
    assert len(fake_ximilar.requests(SEARCH_PATH)) == 1


async def test_a_spent_budget_calls_nothing_and_leaves_the_breaker_alone(
        fake_ximilar: FakeXimilar, http: httpx.AsyncClient) -> None:
    client = make_client(fake_ximilar, http, failures=1)
    for _ in range(3):
        with pytest.raises(BudgetSpent):
            await client.tags([jpeg((1, 2, 3))], deadline=Deadline(0.0))
    assert fake_ximilar.requests() == [] and client.breaker.state is BreakerState.CLOSED


def test_top_category_arrives_as_a_list_of_named_probabilities() -> None:
    raw = {"name": "Clothing/Upper", "id": "o1", "bound_box": [1, 2, 30, 40], "prob": 0.9,
           "Top Category": [{"id": "t1", "name": "Accessories", "prob": 0.2},
                            {"id": "t2", "name": "Clothing", "prob": 0.97}]}
    assert wire.parse_object(raw, "o").top_category == "Clothing"
    assert wire.parse_object({**raw, "Top Category": "Clothing"}, "o").top_category == "Clothing"
    assert wire.parse_object({**raw, "Top Category": []}, "o").top_category is None
    with pytest.raises(XimilarMalformed, match="Top Category"):
        wire.parse_object({**raw, "Top Category": {"name": "x"}}, "o")
