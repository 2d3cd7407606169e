"""Score combination, semantic agreement and ordering: the one place a final score is made.

``score = VISUAL_WEIGHT × visual + SEMANTIC_WEIGHT × semantic`` (spec: 0.7 / 0.3).

Semantic agreement compares the crop's tags with the SKU's catalog metadata, field by field:

=========  ======  ==================================================================
field      weight  agreement
=========  ======  ==================================================================
type       0.35    same fine type 1.0; different type in the same category 0.4; else 0
category   0.10    same coarse category 1.0, else 0 (also derived from the type)
colour     0.30    1 − ΔE(CIELAB)/60 between the named colours, floored at 0
pattern    0.15    same pattern 1.0, else 0
material   0.10    same material 1.0; sharing a word ("nylon ripstop"/"nylon") 0.5
=========  ======  ==================================================================

A field unknown on either side neither rewards nor penalises: the weighted mean runs over
the fields both sides know. With no common field the semantic score is the neutral 0.5.
A tag the tagger was unsure of counts in proportion to its confidence: when the tags carry
``probabilities`` (the gateway's /tag does), a field's agreement ``a`` is shrunk towards the
neutral 0.5 as ``0.5 + p × (a − 0.5)``, so a guess cannot outweigh what the photos show.

How much a field may count also depends on WHO produced the tag: ``FIELD_RELIABILITY`` gives,
per garment-tag provider (``tags["tag_provider"]``, else ``tags["provider"]``, else the
reranker's default), a factor ``r`` per field; the agreement becomes ``0.5 + r × p × (a − 0.5)``
and a field with ``r = 0`` is treated as unknown (it neither rewards nor penalises, and does not
dilute the fields that do count). A provider not in the table is trusted (``r = 1``).

The offline tagger (provider ``local``), measured on the synthetic data — seed 7 to choose,
seed 11 held out to confirm; ``bench/rerank_quality.py`` reproduces the top-1 figures, including
the old rule that trusted every field (0.73 on both seeds):

- ``category`` and ``type`` come from detection (the tagger only echoes them): ``r = 1``. The
  category is what the gateway's /search does not use (it ranks the whole catalog), so it is
  the offline reranker's main new information: top-1 0.58 → 0.82 (seed 7), 0.50 → 0.82
  (held-out seed 11) — the same top-1 as a search restricted to the true category.
- ``colour`` and ``pattern`` are read from the same pixels the offline descriptor already
  encodes. Among candidates whose visual scores are within 0.03 of the top, the true SKU agrees
  with the tag better than a wrong one in 50 % (colour) / 52 % (pattern) of pairs: no
  information beyond the visual score. Their errors (16–22 % / 38–41 %) are often confident
  (pattern at p ≥ 0.95 is right only 40 % of the time), and every way of letting them count
  that was measured (full, confidence-shrunk, scaled down to 2 %, penalising only a strong
  disagreement at p ≥ 0.9/0.95/0.99) lowered top-1 or left it unchanged: ``r = 0``.
- ``material``: the offline tagger never reports one; ``r = 0`` documents that a guess from it
  would not be trusted either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from unde.rerank.candidates import RankedCandidate, RerankCandidate, VisualEvidence
from unde.vocabulary import COLOUR_BY_NAME, category_of

SEMANTIC_FIELD_WEIGHTS: Final[dict[str, float]] = {
    "type": 0.35,
    "category": 0.10,
    "colour": 0.30,
    "pattern": 0.15,
    "material": 0.10,
}
NEUTRAL_SEMANTIC: Final = 0.5
#: The gateway's offline garment tagger (`unde.vision.tagger`).
LOCAL_TAGGER: Final = "local"
#: Per garment-tag provider, how much each field may count (0 = ignored; absent = 1).
FIELD_RELIABILITY: Final[dict[str, dict[str, float]]] = {
    LOCAL_TAGGER: {"type": 1.0, "category": 1.0, "colour": 0.0, "pattern": 0.0, "material": 0.0},
}
SAME_CATEGORY_TYPE_AGREEMENT: Final = 0.4
COLOUR_DELTA_E_ZERO: Final = 60.0

# Which key carries each field in crop tags (gateway /tag, /detect) and in SKU metadata.
_TAG_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "type": ("type", "product_type"),
    "category": ("category",),
    "colour": ("color", "colour"),
    "pattern": ("pattern",),
    "material": ("material",),
}
_METADATA_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "type": ("product_type", "type"),
    "category": ("category",),
    "colour": ("colour", "color"),
    "pattern": ("pattern",),
    "material": ("material",),
}


@dataclass(frozen=True, slots=True)
class Weights:
    """The visual and semantic weights (from settings; they sum to 1)."""

    visual: float = 0.7
    semantic: float = 0.3


def combine(visual: float | None, semantic: float, weights: Weights) -> float:
    """The combined score. A missing visual score counts as 0 (nothing seen, nothing earned)."""
    return weights.visual * (visual or 0.0) + weights.semantic * semantic


def _normalised(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace("-", "_")
    return text or None


def _pick(source: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    for key in keys:
        value = _normalised(source.get(key))
        if value is not None:
            return value
    return None


def _srgb_to_lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    def linear(channel: int) -> float:
        c = channel / 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def colour_agreement(a: str, b: str) -> float:
    """1 for the same colour name, graded by CIELAB distance for known names, else 0."""
    a, b = a.replace("_", " "), b.replace("_", " ")
    if a == b:
        return 1.0
    ca, cb = COLOUR_BY_NAME.get(a), COLOUR_BY_NAME.get(b)
    if ca is None or cb is None:
        return 0.0
    delta_e = math.dist(_srgb_to_lab(ca.rgb), _srgb_to_lab(cb.rgb))
    return max(0.0, 1.0 - delta_e / COLOUR_DELTA_E_ZERO)


def _type_agreement(a: str, b: str) -> float:
    if a == b:
        return 1.0
    category_a, category_b = category_of(a), category_of(b)
    if category_a is not None and category_a == category_b:
        return SAME_CATEGORY_TYPE_AGREEMENT
    return 0.0


def _material_agreement(a: str, b: str) -> float:
    if a == b:
        return 1.0
    return 0.5 if set(a.replace("_", " ").split()) & set(b.replace("_", " ").split()) else 0.0


def _field_values(tags: Mapping[str, Any], metadata: Mapping[str, Any], name: str
                  ) -> tuple[str | None, str | None]:
    crop, sku = _pick(tags, _TAG_KEYS[name]), _pick(metadata, _METADATA_KEYS[name])
    if name == "category":  # a fine type implies its category
        crop = crop or category_of(_pick(tags, _TAG_KEYS["type"]) or "")
        sku = sku or category_of(_pick(metadata, _METADATA_KEYS["type"]) or "")
    return crop, sku


_AGREEMENT = {
    "type": _type_agreement,
    "category": lambda a, b: 1.0 if a == b else 0.0,
    "colour": colour_agreement,
    "pattern": lambda a, b: 1.0 if a == b else 0.0,
    "material": _material_agreement,
}


def _confidences(tags: Mapping[str, Any]) -> dict[str, float]:
    """Per-field tag confidence in [0, 1] from `tags["probabilities"]` (absent → 1)."""
    raw = tags.get("probabilities")
    if not isinstance(raw, Mapping):
        return {}
    confidences: dict[str, float] = {}
    for field_name, keys in _TAG_KEYS.items():
        for key in keys:
            value = raw.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                confidences[field_name] = min(1.0, max(0.0, float(value)))
                break
    return confidences


def tag_provider(tags: Mapping[str, Any], default: str | None = None) -> str | None:
    """Who produced the crop's garment tags: ``tag_provider``, else ``provider``, else `default`."""
    for key in ("tag_provider", "provider"):
        value = tags.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return default


def field_reliability(provider: str | None) -> dict[str, float]:
    """How much each semantic field may count for tags from `provider` (see the module doc)."""
    table = FIELD_RELIABILITY.get(provider or "", {})
    return {name: table.get(name, 1.0) for name in SEMANTIC_FIELD_WEIGHTS}


@dataclass(frozen=True, slots=True)
class SemanticAgreement:
    """The semantic score and the per-field agreements it was made of."""

    score: float
    fields: dict[str, float]

    def describe(self) -> str:
        """A short human-readable account, e.g. ``type 1.00, colour 0.74``."""
        if not self.fields:
            return "no comparable tags (semantic neutral 0.5)"
        return ", ".join(f"{name} {value:.2f}" for name, value in self.fields.items())


def semantic_agreement(tags: Mapping[str, Any], metadata: Mapping[str, Any], *,
                       default_tag_provider: str | None = None) -> SemanticAgreement:
    """Agreement between crop tags and SKU metadata over the fields both sides know and the
    tags' provider may be trusted with (`default_tag_provider` when the tags do not say)."""
    fields: dict[str, float] = {}
    confidence = _confidences(tags)
    reliability = field_reliability(tag_provider(tags, default_tag_provider))
    for name in SEMANTIC_FIELD_WEIGHTS:
        if reliability[name] <= 0.0:
            continue
        crop, sku = _field_values(tags, metadata, name)
        if crop is not None and sku is not None:
            agreement = _AGREEMENT[name](crop, sku)
            trust = reliability[name] * confidence.get(name, 1.0)
            fields[name] = NEUTRAL_SEMANTIC + trust * (agreement - NEUTRAL_SEMANTIC)
    if not fields:
        return SemanticAgreement(NEUTRAL_SEMANTIC, fields)
    total = sum(SEMANTIC_FIELD_WEIGHTS[name] for name in fields)
    score = sum(SEMANTIC_FIELD_WEIGHTS[name] * value for name, value in fields.items()) / total
    return SemanticAgreement(score, fields)


def rank_key(item: RankedCandidate) -> tuple[float, float, float, float, str, str]:
    """Sort key: score, then visual, semantic, search score (all descending), then the SKU key
    ascending, so equal scores always come out in the same order."""
    visual = item.visual if item.visual is not None else -1.0
    return (-item.score, -visual, -item.semantic, -item.search_score, item.brand, item.external_id)


def order(items: Iterable[RankedCandidate]) -> list[RankedCandidate]:
    """Ranked best first, with deterministic tie-breaks (see `rank_key`)."""
    return sorted(items, key=rank_key)


def rank(candidates: Iterable[RerankCandidate], visuals: Mapping[str, VisualEvidence],
         tags: Mapping[str, Any], weights: Weights, *,
         default_tag_provider: str | None = None) -> list[RankedCandidate]:
    """Combine each candidate's visual evidence (by `sku_id`) with its semantic agreement and
    order the result. A SKU listed twice is ranked once (its first occurrence).
    `default_tag_provider` is whose garment tags to assume when the tags do not say."""
    ranked: dict[str, RankedCandidate] = {}
    for candidate in candidates:
        if candidate.sku_id in ranked:
            continue
        semantic = semantic_agreement(tags, candidate.metadata,
                                      default_tag_provider=default_tag_provider)
        evidence = visuals.get(candidate.sku_id) or VisualEvidence(None, "no visual evidence")
        ranked[candidate.sku_id] = RankedCandidate(
            brand=candidate.brand,
            external_id=candidate.external_id,
            visual=evidence.score,
            semantic=semantic.score,
            score=combine(evidence.score, semantic.score, weights),
            reason=f"{evidence.reason}; semantic: {semantic.describe()}",
            search_score=candidate.search_score,
        )
    return order(ranked.values())
