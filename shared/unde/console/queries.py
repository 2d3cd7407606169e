"""What the console reads: malls and products from staging, request rows from production."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from unde.console.shapes import CatalogProduct, Mall, RequestSummary
from unde.pipeline.matches import best_image
from unde.pipeline.request_log import COLUMNS

MAX_MALLS = 500
MAX_PRODUCTS = 200

MALLS_SQL = f"""
SELECT mall_name AS name, count(*)::int AS stores FROM raw_stores
GROUP BY mall_name ORDER BY mall_name LIMIT {MAX_MALLS}
"""
RECENT_SQL = """
SELECT id::text AS id, created_at, user_mall, photo_url, items_detected, items_matched, total_time_ms,
       degradations
FROM recognition_requests ORDER BY created_at DESC LIMIT %(limit)s
"""
_ROW_COLUMNS = ", ".join(column for column in COLUMNS if column not in ("id", "user_id"))
REQUEST_SQL = f"""
SELECT id::text AS id, user_id::text AS user_id, created_at, user_feedback, {_ROW_COLUMNS}
FROM recognition_requests WHERE id = %(id)s
"""
PRODUCTS_SQL = """
SELECT p.brand, p.external_id, p.name, p.price::float AS price, p.currency, p.image_urls, p.image_kinds
FROM raw_products p
JOIN unnest(%(brands)s::text[], %(ids)s::text[]) AS k(brand, external_id)
  ON p.brand = k.brand AND p.external_id = k.external_id
"""


async def malls(conn: AsyncConnection) -> list[Mall]:
    """Every mall with at least one store, by name."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(MALLS_SQL)
    return [Mall.model_validate(row) for row in await cursor.fetchall()]


async def recent_requests(conn: AsyncConnection, limit: int) -> list[RequestSummary]:
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(RECENT_SQL, {"limit": limit})
    return [RequestSummary.model_validate(row) for row in await cursor.fetchall()]


async def request_row(conn: AsyncConnection, request_id: uuid.UUID) -> dict[str, Any] | None:
    """One `recognition_requests` row as a dict, or None."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(REQUEST_SQL, {"id": request_id})
    return await cursor.fetchone()


def matched_products(final_matches: Any) -> list[tuple[str, str]]:
    """The (brand, external_id) of every final match in a row (an error row has none)."""
    pairs: list[tuple[str, str]] = []
    for item in final_matches if isinstance(final_matches, list) else []:
        for match in item.get("matches") or [] if isinstance(item, dict) else []:
            pair = (str(match.get("brand")), str(match.get("external_id")))
            if pair not in pairs:
                pairs.append(pair)
    return pairs[:MAX_PRODUCTS]


async def products(conn: AsyncConnection, pairs: list[tuple[str, str]]) -> list[CatalogProduct]:
    """The catalog's current name, price and photo of each product in `pairs` that still exists."""
    if not pairs:
        return []
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(PRODUCTS_SQL, {"brands": [b for b, _ in pairs], "ids": [e for _, e in pairs]})
    return [CatalogProduct(brand=row["brand"], external_id=row["external_id"], name=row["name"],
                           price=row["price"], currency=row["currency"],
                           image=best_image(row["image_urls"] or [], row["image_kinds"]))
            for row in await cursor.fetchall()]
