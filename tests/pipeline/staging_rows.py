"""A hand-made staging catalog for pipeline tests: exact rows, known answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

NOW = datetime.now(UTC)

STORES = [
    ("zara", "z-dhm", "Zara Dubai Hills", "Dubai Hills Mall"),
    ("zara", "z-moe", "Zara MoE", "Mall of the Emirates"),
    ("mango", "m-dhm", "Mango Dubai Hills", "Dubai Hills Mall"),
]

# brand, external_id, price, category, type, colour
PRODUCTS = [
    ("zara", "z1", 199.0, "outerwear", "bomber_jacket", "khaki"),
    ("zara", "z2", 149.0, "outerwear", "bomber_jacket", "khaki"),
    ("zara", "z3", 99.0, "bottom", "jeans", "blue"),
    ("mango", "m1", 249.0, "outerwear", "bomber_jacket", "black"),
    ("mango", "m2", 89.0, "outerwear", "coat", "khaki"),
]

# brand, store, product, sizes, hours ago — several snapshots per pair; latest wins.
SNAPSHOTS = [
    ("zara", "z-dhm", "z1", ["M", "L"], 2),
    ("zara", "z-dhm", "z1", [], 10),            # older and empty: ignored, latest is in stock
    ("zara", "z-dhm", "z2", [], 1),             # latest empty: out of stock
    ("zara", "z-dhm", "z2", ["S"], 5),
    ("zara", "z-moe", "z3", ["32"], 1),         # in stock, but only in another mall
    ("zara", "z-dhm", "z3", ["30"], 30),        # stale for 24 h, fresh enough for 48 h
    ("mango", "m-dhm", "m1", ["XS"], 3),
    ("mango", "m-dhm", "m2", ["M"], 4),
]


def load(staging_url: str) -> None:
    with psycopg.connect(staging_url) as conn:
        for brand, store_id, name, mall in STORES:
            conn.execute(
                "INSERT INTO raw_stores (brand, store_id, name, address, mall_name, floor) "
                "VALUES (%s, %s, %s, %s, %s, %s)", (brand, store_id, name, f"{mall}, Dubai", mall, "1"))
        for brand, external_id, price, category, ptype, colour in PRODUCTS:
            urls = [f"http://img/{brand}/{external_id}/{rank}.jpg" for rank in range(5)]
            conn.execute(
                "INSERT INTO raw_products (brand, external_id, name, price, category, product_type,"
                " colour, pattern, image_urls, image_kinds) VALUES (%s,%s,%s,%s,%s,%s,%s,'solid',%s,%s)",
                (brand, external_id, f"{ptype} {colour}", price, category, ptype, colour, Jsonb(urls),
                 Jsonb(["flat", "on_model", "detail", "flat", "on_model"])))
        for brand, store_id, product, sizes, hours in SNAPSHOTS:
            conn.execute(
                "INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock, fetched_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (brand, store_id, product, Jsonb(sizes), NOW - timedelta(hours=hours)))
