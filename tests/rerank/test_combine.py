"""Score combination, semantic agreement, ordering and the offline context rules."""

from __future__ import annotations

import pytest

from unde.rerank.candidates import RankedCandidate, RerankCandidate, VisualEvidence
from unde.rerank.combine import (
    FIELD_RELIABILITY,
    LOCAL_TAGGER,
    NEUTRAL_SEMANTIC,
    SEMANTIC_FIELD_WEIGHTS,
    Weights,
    colour_agreement,
    combine,
    order,
    rank,
    semantic_agreement,
)
from unde.rerank.context_rules import infer_context


def test_combine_is_the_weighted_sum() -> None:
    assert combine(0.8, 0.5, Weights(0.7, 0.3)) == pytest.approx(0.7 * 0.8 + 0.3 * 0.5)
    assert combine(0.8, 0.5, Weights(1.0, 0.0)) == pytest.approx(0.8)
    assert combine(None, 0.5, Weights(0.7, 0.3)) == pytest.approx(0.15)


def test_semantic_weights_sum_to_one() -> None:
    assert sum(SEMANTIC_FIELD_WEIGHTS.values()) == pytest.approx(1.0)


def test_full_agreement_and_full_disagreement() -> None:
    tags = {"type": "coat", "color": "navy", "pattern": "solid", "material": "wool"}
    same = {"product_type": "coat", "colour": "navy", "pattern": "solid", "material": "wool"}
    other = {"product_type": "sneakers", "colour": "yellow", "pattern": "dotted", "material": "leather"}
    assert semantic_agreement(tags, same).score == pytest.approx(1.0)
    assert semantic_agreement(tags, other).score == pytest.approx(0.0)


def test_unknown_fields_neither_reward_nor_penalise() -> None:
    metadata = {"product_type": "coat", "colour": "navy", "pattern": "striped"}
    known = semantic_agreement({"type": "coat", "color": "navy"}, metadata)
    # pattern missing from the tags, material missing from the metadata: both ignored
    assert set(known.fields) == {"type", "category", "colour"}
    assert known.score == pytest.approx(1.0)
    assert semantic_agreement({}, metadata).score == NEUTRAL_SEMANTIC
    assert semantic_agreement({"style": "casual"}, metadata).fields == {}


def test_graded_type_and_colour_agreement() -> None:
    blazer = semantic_agreement({"type": "coat"}, {"product_type": "blazer"})
    jeans = semantic_agreement({"type": "coat"}, {"product_type": "jeans"})
    assert jeans.score == 0 < blazer.score < 1  # same category earns partial credit
    assert colour_agreement("navy", "blue") > colour_agreement("navy", "yellow")
    assert colour_agreement("navy", "navy") == 1.0
    assert colour_agreement("mauve", "navy") == 0.0  # not in the vocabulary: exact match only


def test_material_partial_match() -> None:
    result = semantic_agreement({"material": "nylon"}, {"material": "nylon ripstop"})
    assert result.fields["material"] == 0.5


def _ranked(brand: str, sku: str, score: float, visual: float | None, semantic: float,
            search: float = 0.5) -> RankedCandidate:
    return RankedCandidate(brand, sku, visual, semantic, score, "", search)


def test_order_breaks_ties_deterministically() -> None:
    items = [
        _ranked("b", "2", 0.5, 0.5, 0.5),
        _ranked("a", "9", 0.5, 0.5, 0.5),
        _ranked("a", "1", 0.5, 0.5, 0.5),
        _ranked("z", "0", 0.5, 0.6, 0.2667),
        _ranked("y", "0", 0.9, 0.9, 0.9),
        _ranked("x", "0", 0.5, 0.5, 0.5, search=0.9),
    ]
    keys = [item.sku_id for item in order(items)]
    assert keys == ["y/0", "z/0", "x/0", "a/1", "a/9", "b/2"]
    assert [i.sku_id for i in order(reversed(items))] == keys


def test_rank_combines_and_dedupes() -> None:
    tags = {"type": "coat", "color": "navy"}
    candidates = [
        RerankCandidate("b", "1", 0.9, ("u",), {"product_type": "jeans", "colour": "yellow"}),
        RerankCandidate("b", "2", 0.8, ("u",), {"product_type": "coat", "colour": "navy"}),
        RerankCandidate("b", "1", 0.1, ("u",), {}),
    ]
    visuals = {"b/1": VisualEvidence(0.80, "v"), "b/2": VisualEvidence(0.78, "v")}
    ranked = rank(candidates, visuals, tags, Weights(0.7, 0.3))
    assert [r.sku_id for r in ranked] == ["b/2", "b/1"]  # semantics overturn a small visual gap
    assert ranked[0].score == pytest.approx(0.7 * 0.78 + 0.3 * 1.0)
    assert "semantic: type 1.00" in ranked[0].reason


def test_best_on_model_photo() -> None:
    kinds = {"image_kinds": ["flat", "detail", "on_model", "on_model"]}
    candidate = RerankCandidate("b", "1", 0.5, ("f", "d", "m1", "m2"), kinds)
    assert candidate.best_on_model_photo() == "m1"
    assert RerankCandidate("b", "1", 0.5, ("f", "d"), {}).best_on_model_photo() == "f"
    assert RerankCandidate("b", "1", 0.5, (), kinds).best_on_model_photo() is None


@pytest.mark.parametrize(("hints", "expected"), [
    ({"type": "coat"}, {"season": "autumn-winter"}),
    ({"type": "boots"}, {"season": "autumn-winter"}),
    ({"type": "shorts"}, {"season": "summer", "style": "casual", "occasion": "everyday"}),
    ({"type": "blazer", "color": "navy"}, {"style": "smart", "occasion": "office"}),
    ({"type": "t_shirt", "color": "white"}, {"season": "spring-summer", "style": "casual"}),
])
def test_offline_context_rules(hints: dict[str, str], expected: dict[str, str]) -> None:
    tags = infer_context(hints).to_json()
    for name, value in expected.items():
        assert tags[name] == value
    assert tags["brand_style"] is None and "brand_style" in tags["unknown"]
    for name in tags["unknown"]:
        assert tags[name] is None


def test_offline_context_without_hints_invents_nothing() -> None:
    tags = infer_context({"category": "top", "type": "not-a-garment"}).to_json()
    assert tags["unknown"] == ["style", "occasion", "brand_style", "season"]
    assert all(tags[name] is None for name in tags["unknown"])


def test_tag_confidence_shrinks_agreement_towards_neutral() -> None:
    metadata = {"colour": "yellow", "pattern": "striped"}
    sure = semantic_agreement({"color": "navy", "pattern": "striped"}, metadata)
    unsure = semantic_agreement({"color": "navy", "pattern": "striped",
                                 "probabilities": {"color": 0.2, "pattern": 1.0}}, metadata)
    assert sure.fields["colour"] < unsure.fields["colour"] < NEUTRAL_SEMANTIC
    assert unsure.fields["colour"] == pytest.approx(0.5 + 0.2 * (sure.fields["colour"] - 0.5))
    assert unsure.fields["pattern"] == sure.fields["pattern"] == 1.0
    ignored = semantic_agreement({"color": "navy", "probabilities": {"color": "high"}}, metadata)
    assert ignored.fields["colour"] == sure.fields["colour"]


def test_offline_tagger_fields_are_weighed_by_their_reliability() -> None:
    tags = {"category": "top", "type": "shirt", "color": "navy", "pattern": "striped", "material": "wool",
            "probabilities": {"color": 0.99, "pattern": 0.99}}
    metadata = {"category": "top", "product_type": "shirt", "colour": "yellow", "pattern": "dotted",
                "material": "linen"}
    local = semantic_agreement(tags, metadata, default_tag_provider=LOCAL_TAGGER)
    assert set(local.fields) == {"type", "category"}  # colour/pattern/material: unknown, not 0.5
    assert local.score == pytest.approx(1.0)
    trusted = semantic_agreement(tags, metadata)
    assert {"colour", "pattern", "material"} <= set(trusted.fields) and trusted.score < 0.6
    # the tags may name their provider; that wins over the reranker's default
    assert semantic_agreement({**tags, "tag_provider": "ximilar"}, metadata,
                              default_tag_provider=LOCAL_TAGGER).score == pytest.approx(trusted.score)
    assert semantic_agreement({**tags, "provider": "local"}, metadata).score == pytest.approx(1.0)
    wrong_category = semantic_agreement({**tags, "type": None}, {**metadata, "category": "bag",
                                                                 "product_type": "tote"},
                                        default_tag_provider=LOCAL_TAGGER)
    assert wrong_category.score == 0.0 and set(wrong_category.fields) == {"category"}
    assert FIELD_RELIABILITY[LOCAL_TAGGER]["category"] == 1.0


def test_partial_reliability_shrinks_towards_neutral(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FIELD_RELIABILITY, "halfway", {"colour": 0.5})
    metadata = {"colour": "yellow"}
    full = semantic_agreement({"color": "navy"}, metadata).fields["colour"]
    half = semantic_agreement({"color": "navy", "tag_provider": "halfway",
                               "probabilities": {"color": 0.8}}, metadata).fields["colour"]
    assert half == pytest.approx(0.5 + 0.5 * 0.8 * (full - 0.5))


def test_rank_passes_the_default_tag_provider() -> None:
    tags = {"category": "outerwear", "color": "navy"}
    candidates = [
        RerankCandidate("b", "red", 0.9, ("u",), {"category": "outerwear", "colour": "red"}),
        RerankCandidate("b", "navy", 0.8, ("u",), {"category": "outerwear", "colour": "navy"}),
    ]
    visuals = {"b/red": VisualEvidence(0.80, "v"), "b/navy": VisualEvidence(0.78, "v")}
    assert [r.sku_id for r in rank(candidates, visuals, tags, Weights())] == ["b/navy", "b/red"]
    local = rank(candidates, visuals, tags, Weights(), default_tag_provider=LOCAL_TAGGER)
    assert [r.sku_id for r in local] == ["b/red", "b/navy"]
