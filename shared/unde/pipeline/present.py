"""Human-readable rendering of a recognition response (CLI and demo)."""

from __future__ import annotations

from typing import Any


def _store(match: dict[str, Any]) -> str:
    stores = match.get("stores") or []
    if not stores:
        return "availability not checked"
    store = stores[0]
    floor = f", floor {store['floor']}" if store.get("floor") else ""
    sizes = ", ".join(match.get("sizes_in_stock") or []) or "-"
    return f"{store['name']} ({store['mall']}{floor}) sizes {sizes}"


def describe_match(match: dict[str, Any]) -> str:
    score = "" if match.get("score") is None else f" score {match['score']:.2f}"
    price = f"{match.get('price')} {match.get('currency') or ''}".strip()
    return f"{match['brand']}/{match['external_id']} {match.get('name') or ''} — {price}{score} — {_store(match)}"


def describe_response(body: dict[str, Any], max_matches: int = 3) -> str:
    """A few lines per garment: what it is, the tier, the best matches with store and sizes."""
    lines = [f"request {body['request_id']} — {len(body['items'])} garment(s), {body['total_ms']:.0f} ms"]
    for item in body["items"]:
        tags = item.get("tags") or {}
        what = " ".join(str(v) for v in (tags.get("color"), item.get("type") or item.get("category")) if v)
        lines.append(f"  #{item['item_id']} {what} [{item['match_type']}]"
                     + (" (partial)" if item.get("partial") else ""))
        for match in item["matches"][:max_matches]:
            lines.append(f"      {describe_match(match)}")
        if not item["matches"]:
            lines.append("      (no match)")
    if body.get("degraded"):
        lines.append(f"  degraded: {', '.join(body['degraded'])}")
    return "\n".join(lines)
