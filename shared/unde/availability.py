"""Step 3.5 — what is in stock in the shopper's mall right now — and the attribute fallback.

The spec's query takes `DISTINCT ON` over the whole availability window (millions of rows at
scale) before it looks at the candidates. Here the candidates drive the lookup: each
(brand, product) pair is joined to the brand's stores in the mall, and the latest snapshot per
(brand, store, product) inside the window is one probe of the index
`raw_availability (brand, product_id, store_id, fetched_at DESC)`. A product whose latest
snapshot has empty `sizes_in_stock` is out of stock, even if an older snapshot was not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

#: Latest snapshot of one (brand, product) in one store of the mall, inside the window.
_LATEST_IN_STORE = """
    SELECT a.sizes_in_stock, a.fetched_at
    FROM raw_availability a
    WHERE a.brand = s.brand AND a.product_id = {product} AND a.store_id = s.store_id
      AND a.fetched_at > now() - %(window)s::interval
    ORDER BY a.fetched_at DESC
    LIMIT 1
"""

AVAILABILITY_SQL = f"""
SELECT c.brand, c.product_id, c.ord, s.store_id, s.name AS store_name, s.address, s.mall_name,
       s.floor, l.sizes_in_stock, l.fetched_at
FROM unnest(%(brands)s::text[], %(products)s::text[]) WITH ORDINALITY AS c(brand, product_id, ord)
JOIN raw_stores s ON s.brand = c.brand AND s.mall_name = %(mall)s
CROSS JOIN LATERAL ({_LATEST_IN_STORE.format(product="c.product_id")}) l
WHERE l.sizes_in_stock <> '[]'::jsonb
ORDER BY c.ord, s.store_id
"""

FALLBACK_SQL = f"""
SELECT p.brand, p.external_id, p.name, p.price, p.currency, p.category, p.product_type, p.colour,
       p.pattern, p.material, p.image_urls, p.image_kinds,
       s.store_id, s.name AS store_name, s.address, s.mall_name, s.floor, l.sizes_in_stock
FROM raw_products p
JOIN raw_stores s ON s.brand = p.brand AND s.mall_name = %(mall)s
CROSS JOIN LATERAL ({_LATEST_IN_STORE.format(product="p.external_id")}) l
WHERE {{match}} AND l.sizes_in_stock <> '[]'::jsonb
ORDER BY p.price, p.brand, p.external_id, s.store_id
LIMIT %(limit)s
"""

FALLBACK_NO_MALL_SQL = """
SELECT p.brand, p.external_id, p.name, p.price, p.currency, p.category, p.product_type, p.colour,
       p.pattern, p.material, p.image_urls, p.image_kinds
FROM raw_products p
WHERE {match}
ORDER BY p.price, p.brand, p.external_id
LIMIT %(limit)s
"""


@dataclass(frozen=True, slots=True)
class StoreStock:
    """One store of the mall holding the product, with the sizes in stock."""

    store_id: str
    store_name: str
    address: str | None
    mall_name: str
    floor: str | None
    sizes_in_stock: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"store_id": self.store_id, "name": self.store_name, "address": self.address,
                "mall": self.mall_name, "floor": self.floor, "sizes_in_stock": self.sizes_in_stock}


def _stock(row: dict[str, Any]) -> StoreStock:
    return StoreStock(row["store_id"], row["store_name"], row["address"], row["mall_name"],
                      row["floor"], list(row["sizes_in_stock"]))


async def stock_in_mall(conn: AsyncConnection, pairs: Sequence[tuple[str, str]], mall: str,
                        window: timedelta) -> dict[tuple[str, str], list[StoreStock]]:
    """For each (brand, external_id) in stock in the mall: the stores and sizes. Others absent."""
    if not pairs:
        return {}
    params = {"brands": [brand for brand, _ in pairs], "products": [pid for _, pid in pairs],
              "mall": mall, "window": window}
    found: dict[tuple[str, str], list[StoreStock]] = {}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(AVAILABILITY_SQL, params)
        for row in await cur.fetchall():
            found.setdefault((row["brand"], row["product_id"]), []).append(_stock(row))
    return found


@dataclass(slots=True)
class FallbackQuery:
    """The attribute fallback's inputs: what the garment is and where the shopper is."""

    category: str | None
    product_type: str | None = None
    colour: str | None = None
    mall: str | None = None
    limit: int = 10


@dataclass(slots=True)
class FallbackResult:
    """Products in the same style, and which relaxation of the match produced them."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    matched_on: list[str] = field(default_factory=list)


def fallback_attempts(query: FallbackQuery) -> list[tuple[list[str], str, dict[str, Any]]]:
    """Match conditions from strictest to loosest: type+colour, type, category+colour, category."""
    kinds: list[tuple[list[str], str, dict[str, Any]]] = []
    colour = f"%{query.colour}%" if query.colour else None
    if query.product_type:
        if colour:
            kinds.append((["type", "colour"], "p.product_type = %(type)s AND p.colour ILIKE %(colour)s",
                          {"type": query.product_type, "colour": colour}))
        kinds.append((["type"], "p.product_type = %(type)s", {"type": query.product_type}))
    if query.category:
        if colour:
            kinds.append((["category", "colour"], "p.category = %(category)s AND p.colour ILIKE %(colour)s",
                          {"category": query.category, "colour": colour}))
        kinds.append((["category"], "p.category = %(category)s", {"category": query.category}))
    return kinds


async def attribute_fallback(conn: AsyncConnection, query: FallbackQuery,
                             window: timedelta) -> FallbackResult:
    """The spec's "same style" answer: by type + colour, available in the mall, cheapest first.

    When nothing matches, the match is relaxed step by step (see `fallback_attempts`) so the
    shopper always gets something; `matched_on` says what was matched.
    """
    for matched_on, condition, params in fallback_attempts(query):
        template = FALLBACK_SQL if query.mall else FALLBACK_NO_MALL_SQL
        sql_text = template.format(match=condition)
        values = {**params, "mall": query.mall, "window": window, "limit": query.limit}
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql_text, values)
            rows = await cur.fetchall()
        if rows:
            return FallbackResult(_group_stores(rows), matched_on)
    return FallbackResult()


_STORE_KEYS = ("store_id", "store_name", "address", "mall_name", "floor", "sizes_in_stock")


def _group_stores(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per product (cheapest first), with every store of the mall that has it."""
    products: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["brand"], row["external_id"])
        if key not in products:
            products[key] = {k: (float(v) if isinstance(v, Decimal) else v)
                             for k, v in row.items() if k not in _STORE_KEYS}
            products[key]["stores"] = []
        if row.get("store_id") is not None:
            products[key]["stores"].append(_stock(row).to_json())
    return list(products.values())
