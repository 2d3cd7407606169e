"""Shaping what the shopper sees: one match card per SKU, with price, image, store and sizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unde.availability import StoreStock
from unde.response_shapes import CandidateOut as Candidate
from unde.response_shapes import RankedOut as Ranked


def best_image(image_urls: Sequence[str], image_kinds: Sequence[str] | None) -> str | None:
    """The image a card shows: the first on-model photo (the spec's choice), else the first."""
    if image_kinds:
        for url, kind in zip(image_urls, image_kinds, strict=False):
            if kind == "on_model":
                return url
    return image_urls[0] if image_urls else None


def _sizes(stores: Sequence[dict[str, Any]]) -> list[str]:
    sizes: list[str] = []
    for store in stores:
        for size in store.get("sizes_in_stock") or []:
            if size not in sizes:
                sizes.append(size)
    return sizes


def card(brand: str, external_id: str, metadata: dict[str, Any], image_urls: Sequence[str],
         stores: Sequence[dict[str, Any]], score: float | None, **extra: Any) -> dict[str, Any]:
    """A match card in the response's shape."""
    return {
        "brand": brand,
        "external_id": external_id,
        "name": metadata.get("name"),
        "price": metadata.get("price"),
        "currency": metadata.get("currency"),
        "category": metadata.get("category"),
        "colour": metadata.get("colour"),
        "image": best_image(image_urls, metadata.get("image_kinds")),
        "stores": list(stores),
        "sizes_in_stock": _sizes(stores),
        "score": None if score is None else round(score, 4),
        **extra,
    }


def candidate_card(candidate: Candidate, stock: dict[tuple[str, str], list[StoreStock]],
                   ranked: Ranked | None = None) -> dict[str, Any]:
    """A card for a searched (and possibly reranked) candidate."""
    stores = [store.to_json() for store in stock.get(candidate.key, [])]
    score = ranked.score if ranked else candidate.score
    extra: dict[str, Any] = {"search_score": round(candidate.score, 4)}
    if ranked is not None:
        extra.update(visual=ranked.visual, semantic=ranked.semantic, reason=ranked.reason)
    return card(candidate.brand, candidate.external_id, candidate.metadata, candidate.image_urls,
                stores, score, **extra)


def fallback_card(row: dict[str, Any]) -> dict[str, Any]:
    """A card for a product found by the attribute fallback (no visual score)."""
    metadata = {key: row.get(key) for key in ("name", "price", "currency", "category", "colour")}
    metadata["image_kinds"] = row.get("image_kinds")
    return card(row["brand"], row["external_id"], metadata, row.get("image_urls") or [],
                row.get("stores") or [], None)
