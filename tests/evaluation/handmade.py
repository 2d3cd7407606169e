"""A hand-made labelled set: two photos, their ground truth, responses and log rows, with every
figure of the scorecard worked out by hand (see test_report.py)."""

from __future__ import annotations

from typing import Any


def _truth(bbox: list[int], category: str, brand: str | None, external_id: str | None,
           in_catalog: bool = True, available: bool = True) -> dict[str, Any]:
    return {"bbox": bbox, "category": category, "brand": brand, "external_id": external_id,
            "in_catalog": in_catalog, "available_in_mall": available}


def _item(item_id: int, bbox: list[int], category: str, match_type: str, matches: list[tuple[str, str, float]],
          search: dict[str, Any] | None, tags: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "bbox": bbox, "category": category, "match_type": match_type,
            "matches": [{"brand": b, "external_id": e, "score": s} for b, e, s in matches],
            "search": search, "tags": tags or {}}


def _search(confident: bool, top1: float, margin: float, used_ximilar: bool = False) -> dict[str, Any]:
    return {"pgvector_confident": confident, "used_ximilar": used_ximilar, "pgvector_top1_score": top1,
            "pgvector_margin": margin, "ximilar_top1_score": None, "requeried_ximilar": False}


PHOTO_A = {"photo_id": "a", "file": "a.jpg", "mall": "M", "items": [
    _truth([0, 0, 100, 100], "top", "b", "A1"),
    _truth([200, 0, 300, 100], "bottom", "b", "B1"),
    _truth([0, 200, 100, 300], "shoes", None, None, in_catalog=False, available=False),
]}
RESPONSE_A = {"request_id": "ra", "credits": 25, "items": [
    _item(0, [0, 0, 100, 100], "top", "exact", [("b", "A1", 0.9)], _search(True, 0.91, 0.2)),   # IoU 1
    _item(1, [200, 0, 300, 110], "bottom", "similar",                                          # IoU 0.909
          [("b", "X", 0.7), ("b", "Y", 0.69), ("b", "B1", 0.68), ("b", "Z", 0.6)],
          _search(False, 0.6, 0.02, used_ximilar=True), tags={"color": "navy"}),
    _item(2, [0, 200, 100, 240], "shoes", "style", [], None),                                  # IoU 0.4: miss
    _item(3, [400, 400, 500, 500], "bag", "style", [], None),                                  # false positive
], "timings_ms": {"detection": 100, "search": 50, "rerank": None, "total": 400}}
RECORD_A = {"used_ximilar_tagging": False, "search_results": [{"item_id": 0}, {"item_id": 1}]}

PHOTO_B = {"photo_id": "b", "file": "b.jpg", "mall": "M", "items": [
    _truth([0, 0, 100, 200], "dress", "c", "D1"),
    _truth([100, 0, 200, 100], "top", "c", "T1", available=False),
]}
SHORTLIST_B = [{"brand": "c", "external_id": "WRONG"}] + [
    {"brand": "c", "external_id": f"Q{i}"} for i in range(11)] + [{"brand": "c", "external_id": "D1"}] + [
    {"brand": "c", "external_id": f"R{i}"} for i in range(2)]   # 15 entries, D1 at rank 13
RESPONSE_B = {"request_id": "rb", "credits": 5, "items": [
    _item(0, [0, 0, 100, 200], "dress", "exact", [("c", "WRONG", 0.88)], _search(True, 0.8, 0.3)),
    _item(1, [100, 0, 200, 100], "outerwear", "exact", [("c", "T1", 0.95)], _search(True, 0.93, 0.4)),
], "timings_ms": {"detection": 200, "search": 150, "total": 800}}
RECORD_B = {"used_ximilar_tagging": True, "search_results": [{"item_id": 0, "top": SHORTLIST_B},
                                                             {"item_id": 1}]}

EXPECTED_SUMMARY = {
    "photos": 2, "garments": 5,
    "detection_recall": 0.8, "detection_precision": 0.667, "category_accuracy": 0.75,
    "sku_eligible": 3, "sku_hit_at_1": 0.333, "sku_hit_at_5": 0.667, "sku_hit_at_20": 1.0,
    "ranked_depth_max": 15,
    "tiers": {"exact": 3, "similar": 1, "style": 2}, "exact_tier_precision": 0.667,
    "ximilar_search_share": 0.5, "ximilar_tag_share": 0.5,
    "credits_per_photo": 15.0, "credits_per_photo_if_ximilar": 27.5,
    "p50_ms": {"detection": 150, "search": 100, "total": 600},
    "p95_ms": {"detection": 195, "search": 145, "total": 780},
}
EXPECTED_SCORES = {
    "pgvector_top1_score": {"hit": [0.91, 0.93], "miss": [0.6, 0.8]},
    "final_top_score": {"hit": [0.9, 0.95], "miss": [0.7, 0.88]},
}
