"""Every pipeline rule, against fake upstreams at the wire and a real staging database."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.fakes.pipeline_upstreams import GATEWAY, RERANKER, FakeItem, FakeUpstreams, Latencies
from unde.errors import BadInput, UpstreamUnavailable
from unde.pipeline.photo import PhotoInput, Recognizer
from unde.service_client import ServiceClient
from unde.settings import OrchestratorSettings, load_settings

MALL = "Dubai Hills Mall"
IN_STOCK = [("zara", "z1", 0.93), ("mango", "m1", 0.80), ("mango", "m2", 0.74)]
NOT_IN_STOCK = [("zara", "z2", 0.70), ("zara", "z3", 0.60)]


async def run(fake: FakeUpstreams, staging: AsyncConnectionPool | None, mall: str | None = MALL,
              **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    settings = load_settings(OrchestratorSettings, **overrides)
    async with fake.client() as http:
        recognizer = Recognizer(settings, ServiceClient("vision-gateway", GATEWAY, http, caller="t"),
                                ServiceClient("llm-reranker", RERANKER, http, caller="t"), staging)
        result = await recognizer.recognize(PhotoInput({"url": "http://x/p.jpg"}, "http://x/p.jpg", mall))
    return result.response, result.record


def one(item: FakeItem, **scores: float) -> FakeUpstreams:
    return FakeUpstreams([item], rerank_scores={tuple(k.split("_")): v for k, v in scores.items()})  # type: ignore[misc]


async def test_exact_tier_shows_one_match_with_store_and_sizes(staging: AsyncConnectionPool) -> None:
    fake = one(FakeItem("outerwear", IN_STOCK + NOT_IN_STOCK, confident=True), zara_z1=0.91)
    response, _ = await run(fake, staging)

    [item] = response["items"]
    assert item["match_type"] == "exact"
    [match] = item["matches"]
    assert (match["brand"], match["external_id"], match["score"]) == ("zara", "z1", 0.91)
    assert match["stores"][0]["name"] == "Zara Dubai Hills"
    assert match["sizes_in_stock"] == ["M", "L"]
    assert match["image"] == "http://img/zara/z1/1.jpg"  # the on-model photo
    assert item["candidates_after_availability"] == 3


async def test_similar_tier_shows_up_to_five(staging: AsyncConnectionPool) -> None:
    fake = one(FakeItem("outerwear", IN_STOCK, confident=True), zara_z1=0.85, mango_m1=0.6, mango_m2=0.5)
    response, _ = await run(fake, staging)
    [item] = response["items"]
    assert item["match_type"] == "similar"  # 0.85 is not > CONFIDENCE_HIGH
    assert [m["external_id"] for m in item["matches"]] == ["z1", "m1", "m2"]


async def test_style_tier_answers_from_the_attribute_fallback(staging: AsyncConnectionPool) -> None:
    fake = one(FakeItem("outerwear", IN_STOCK, confident=False, type="bomber_jacket"),
               zara_z1=0.3, mango_m1=0.2, mango_m2=0.1)
    response, _ = await run(fake, staging)
    [item] = response["items"]
    assert item["match_type"] == "style"
    assert item["fallback_matched_on"] == ["type", "colour"]
    assert [m["external_id"] for m in item["matches"]] == ["z1"]
    assert item["matches"][0]["score"] is None


async def test_availability_filter_and_min_candidates_requery(staging: AsyncConnectionPool) -> None:
    item = FakeItem("outerwear", [("zara", "z1", 0.95), ("zara", "z2", 0.90)], confident=True,
                    requery=[("mango", "m1", 0.7), ("mango", "m2", 0.6), ("zara", "z3", 0.5)])
    fake = one(item)
    response, record = await run(fake, staging)

    assert fake.calls["gateway /search"] == 2
    assert [body.get("force_ximilar") for key, body in fake.bodies if key == "gateway /search"] == [False, True]
    [result] = response["items"]
    assert result["search"]["requeried_ximilar"] is True
    assert result["candidates_after_availability"] == 3  # z1, m1, m2; z2 empty, z3 stale
    assert record["candidates_after_availability"] == 3


async def test_no_requery_when_ximilar_was_already_used(staging: AsyncConnectionPool) -> None:
    fake = one(FakeItem("outerwear", [("zara", "z1", 0.6), ("zara", "z2", 0.5)], confident=False,
                        requery=[("mango", "m1", 0.7)]))
    await run(fake, staging)
    assert fake.calls["gateway /search"] == 1


async def test_min_candidates_flag_changes_the_rule(staging: AsyncConnectionPool) -> None:
    fake = one(FakeItem("outerwear", [("zara", "z1", 0.95)], confident=True, requery=[("mango", "m1", 0.7)]))
    await run(fake, staging, min_candidates=1)
    assert fake.calls["gateway /search"] == 1


async def test_availability_window_flag(staging: AsyncConnectionPool) -> None:
    item = FakeItem("bottom", [("zara", "z3", 0.95)], confident=True)
    narrow, _ = await run(one(item), staging, min_candidates=0)
    wide, _ = await run(one(item), staging, min_candidates=0, availability_window="48h")
    assert narrow["items"][0]["candidates_after_availability"] == 0
    assert wide["items"][0]["candidates_after_availability"] == 1


@pytest.mark.parametrize(("mode", "confident", "expected_tag_calls"),
                         [("on_demand", True, 0), ("on_demand", False, 1), ("always", True, 1), ("always", False, 1)])
async def test_tagging_mode(staging: AsyncConnectionPool, mode: str, confident: bool, expected_tag_calls: int) -> None:
    fake = one(FakeItem("outerwear", IN_STOCK, confident=confident), zara_z1=0.95)
    response, record = await run(fake, staging, tagging_mode=mode)
    assert fake.calls["gateway /tag"] == expected_tag_calls
    assert fake.calls["reranker /tag"] == 1  # Gemini context tags: always
    assert record["used_ximilar_tagging"] is bool(expected_tag_calls)
    assert response["items"][0]["tags"]["season"] == "autumn"


async def test_reranker_down_falls_back_to_search_order(staging: AsyncConnectionPool) -> None:
    fake = one(FakeItem("outerwear", IN_STOCK, confident=True))
    fake.fail = {"reranker /rerank", "reranker /tag"}
    response, record = await run(fake, staging)
    [item] = response["items"]
    assert item["match_type"] == "exact"  # search score 0.93 > 0.85
    assert item["matches"][0]["external_id"] == "z1"
    assert {"rerank_unavailable", "context_tags_unavailable"} <= set(response["degraded"])
    assert "rerank_unavailable" in record["degradations"]


async def test_search_down_still_answers_in_style(staging: AsyncConnectionPool) -> None:
    fake = one(FakeItem("outerwear", IN_STOCK, type="bomber_jacket"))
    fake.fail = {"gateway /search"}
    response, _ = await run(fake, staging)
    [item] = response["items"]
    assert item["match_type"] == "style" and item["matches"]
    assert "search_unavailable" in item["degraded"]


async def test_availability_db_down_returns_unfiltered_results_flagged() -> None:
    fake = one(FakeItem("outerwear", IN_STOCK + NOT_IN_STOCK, confident=True), zara_z2=0.97)
    response, _ = await run(fake, None)
    [item] = response["items"]
    assert item["availability_applied"] is False
    assert "availability_unavailable" in item["degraded"]
    assert item["matches"][0]["external_id"] == "z2"  # not filtered: flagged instead


async def test_without_a_mall_the_top_20_go_to_rerank(staging: AsyncConnectionPool) -> None:
    many = [("zara", f"s{i}", 0.9 - i * 0.01) for i in range(30)]
    fake = one(FakeItem("outerwear", many, confident=True))
    response, _ = await run(fake, staging, mall=None)
    rerank_body = next(body for key, body in fake.bodies if key == "reranker /rerank")
    assert len(rerank_body["candidates"]) == 20
    assert response["items"][0]["availability_applied"] is False


async def test_items_run_concurrently_and_the_log_row_has_every_field(staging: AsyncConnectionPool) -> None:
    fake = FakeUpstreams([FakeItem("outerwear", IN_STOCK, confident=True),
                          FakeItem("bottom", IN_STOCK, confident=False)], rerank_scores={("zara", "z1"): 0.9})
    response, record = await run(fake, staging)
    assert len(response["items"]) == 2
    assert record["items_detected"] == 2 and record["items_matched"] == 2
    assert record["used_ximilar_booster"] is True  # the second garment was not confident
    assert record["pgvector_top1_score"] == 0.93
    assert record["pgvector_margin"] == pytest.approx(0.13)
    for column in ("detection_time_ms", "search_time_ms", "tagging_time_ms", "availability_time_ms",
                   "rerank_time_ms", "total_time_ms"):
        assert isinstance(record[column], int), column
    assert record["flags"]["tagging_mode"] == "on_demand"
    assert record["ximilar_credits"] == response["credits"] > 0


async def test_the_deadline_returns_what_is_known(staging: AsyncConnectionPool) -> None:
    fake = one(FakeItem("outerwear", IN_STOCK, confident=True))
    fake.latencies = Latencies(rerank=5.0)
    response, _ = await run(fake, staging, request_soft_deadline_s=0.5)
    [item] = response["items"]
    assert item["partial"] is True and "deadline" in response["degraded"]
    assert item["matches"][0]["external_id"] == "z1"
    assert response["total_ms"] < 2000


async def test_detection_failure_is_503_and_bad_photo_is_4xx() -> None:
    fake = FakeUpstreams([])
    fake.fail = {"gateway /detect"}
    with pytest.raises(UpstreamUnavailable):
        await run(fake, None)

    def reject(request: httpx.Request) -> httpx.Response:
        return httpx.Response(415, json={"error": "bad_input", "message": "not an image", "field": "image"})

    settings = load_settings(OrchestratorSettings)
    async with httpx.AsyncClient(transport=httpx.MockTransport(reject)) as http:
        recognizer = Recognizer(settings, ServiceClient("vision-gateway", GATEWAY, http, caller="t"),
                                ServiceClient("llm-reranker", RERANKER, http, caller="t"), None)
        with pytest.raises(BadInput) as caught:
            await recognizer.recognize(PhotoInput({"url": "http://x"}, "http://x"))
    assert caught.value.status_code == 415


def test_merge_tags_keeps_the_tagger_and_its_confidence() -> None:
    from unde.pipeline.item import merge_tags
    from unde.response_shapes import DetectedItem

    item = DetectedItem(item_id=0, bbox=[0, 0, 10, 10], category="outerwear", type=None, confidence=0.9,
                        crop={"base64": "x"})
    garment = {"type": "bomber_jacket", "color": "khaki", "probabilities": {"color": 0.9},
               "provider": "local", "credits": 0, "unknown": ["material"], "material": None}
    context = {"style": "streetwear", "season": "autumn", "provider": "local", "basis": "rules"}

    assert merge_tags(item, garment, context) == {
        "category": "outerwear", "type": "bomber_jacket", "color": "khaki",
        "probabilities": {"color": 0.9}, "style": "streetwear", "season": "autumn", "tag_provider": "local"}
