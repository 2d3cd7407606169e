"""The pure rules: the confidence gate, merge/de-duplication, the Ximilar vocabulary mapping."""

from __future__ import annotations

import pytest

from unde.providers.ximilar import mapping as xmap
from unde.retrieval.gating import gate_confidence
from unde.retrieval.merge import Candidate, merge_candidates


@pytest.mark.parametrize(("scores", "confident", "top1", "margin"), [
    ([0.90, 0.80], True, 0.90, 0.10),          # exactly on both limits (floating point!)
    ([0.95, 0.70, 0.60], True, 0.95, 0.25),
    ([0.79, 0.50], False, 0.79, 0.29),         # top1 below the threshold
    ([0.95, 0.90], False, 0.95, 0.05),         # margin too small
    ([0.70, 0.95], True, 0.95, 0.25),          # order of the input does not matter
    ([0.85], True, 0.85, 0.85),                # alone: nothing to confuse it with
    ([], False, None, None),
])
def test_gate(scores: list[float], confident: bool, top1: float | None,
              margin: float | None) -> None:
    gate = gate_confidence(scores, threshold=0.80, margin=0.10)
    assert gate.confident is confident
    assert gate.top1 == (pytest.approx(top1) if top1 is not None else None)
    assert gate.margin == (pytest.approx(margin) if margin is not None else None)


def cand(brand: str, sku: str, score: float, source: str, **metadata: object) -> Candidate:
    return Candidate(brand, sku, score, source, (f"http://{source}/{sku}.jpg",),  # type: ignore[arg-type]
                     {"name": None, "price": None, **metadata})


def test_merge_keeps_the_better_score_and_marks_both() -> None:
    pg = [cand("a", "1", 0.82, "pgvector", name="Shirt"), cand("a", "2", 0.70, "pgvector")]
    xi = [cand("a", "1", 0.91, "ximilar", name="other", price=10.0),
          cand("b", "9", 0.75, "ximilar"), cand("b", "9", 0.60, "ximilar")]
    merged = merge_candidates(pg, xi, top_k=10)
    assert [(c.brand, c.external_id, c.source) for c in merged] == [
        ("a", "1", "both"), ("b", "9", "ximilar"), ("a", "2", "pgvector")]
    both = merged[0]
    assert both.score == 0.91
    assert both.metadata["name"] == "Shirt"        # pgvector's catalog metadata wins
    assert both.metadata["price"] == 10.0          # gaps filled from Ximilar
    assert both.image_urls == ("http://pgvector/1.jpg",)
    assert merged[1].score == 0.75                 # Ximilar's own duplicates: best kept


def test_merge_order_is_deterministic_and_truncated() -> None:
    pg = [cand("b", "1", 0.8, "pgvector"), cand("a", "1", 0.8, "pgvector")]
    xi = [cand("c", "1", 0.8, "ximilar"), cand("d", "1", 0.9, "ximilar")]
    merged = merge_candidates(pg, xi, top_k=3)
    assert [(c.brand, c.source) for c in merged] == [("d", "ximilar"), ("a", "pgvector"),
                                                     ("b", "pgvector")]


def test_distance_to_similarity_matches_pgvector_scale() -> None:
    assert xmap.ximilar_similarity(0.0) == 1.0
    assert xmap.ximilar_similarity(0.15) == pytest.approx(0.85)
    assert xmap.ximilar_similarity(1.4) == 0.0 and xmap.ximilar_similarity(-0.01) == 1.0


@pytest.mark.parametrize(("labels", "category", "garment_type"), [
    (("bomber jackets", "Clothing/Jackets", "Clothing/Upper"), "outerwear", "bomber_jacket"),
    (("T-shirts", "Clothing/Tops"), "top", "t_shirt"),
    (("shirt dresses", "Clothing/Dresses"), "dress", "shirt_dress"),
    ((None, "Clothing/Jackets"), "outerwear", None),
    ((None, None, "Clothing/Lower"), "bottom", None),
    (("sneakers", "Footwear/Shoes"), "shoes", "sneakers"),
    ((None, None, "Jewellery"), None, None),
])
def test_taxonomy_mapping(labels: tuple[str | None, ...], category: str | None,
                          garment_type: str | None) -> None:
    assert xmap.garment_category(*labels) == category
    assert xmap.garment_type(*labels[:2]) == garment_type


def test_colour_pattern_material_mapping() -> None:
    assert xmap.colour_name("Gray") == "grey" and xmap.colour_hex("grey") == "#8C8C8C"
    assert xmap.colour_name("multicolor") is None
    assert xmap.pattern_name("stripes") == "striped" and xmap.pattern_name("floral") == "printed"
    assert xmap.material_name("Suede") == "leather" and xmap.material_name("silk") is None
