"""Seeding the staging DB: proportions by SQL, idempotency, ground truth vs DB and images."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from PIL import Image
from synthetic_helpers import background_colour, garment_share

from unde.synthetic.availability import EMPTY_PAIR_FRACTION, SINGLE_MALL_SKU_FRACTION, STALE_PAIR_FRACTION
from unde.synthetic.seed import seed_dataset


def _row(conn: psycopg.Connection[Any], query: str, params: Any = None) -> tuple[Any, ...]:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row


LATEST = """
WITH latest AS (
    SELECT DISTINCT ON (a.brand, a.product_id, a.store_id)
           a.brand, a.product_id, a.store_id, a.sizes_in_stock, a.fetched_at, s.mall_name
    FROM raw_availability a JOIN raw_stores s USING (brand, store_id)
    ORDER BY a.brand, a.product_id, a.store_id, a.fetched_at DESC
)
"""


def test_availability_proportions_and_catalog_rows(staging_url: str, tmp_path: Path, now: datetime) -> None:
    report = seed_dataset(staging_url, tmp_path, "small", seed=7, now=now, street_photos=0, render_images=False)
    assert report.skus == 150 and report.street_photos == 0 and report.lazy_images
    with psycopg.connect(staging_url) as conn:
        pairs, stale, empty, old = _row(
            conn,
            LATEST
            + """
            SELECT count(*),
                   count(*) FILTER (WHERE fetched_at < %(now)s - interval '24 hours'
                                      AND fetched_at >= %(now)s - interval '48 hours'),
                   count(*) FILTER (WHERE fetched_at >= %(now)s - interval '24 hours'
                                      AND sizes_in_stock = '[]'::jsonb),
                   count(*) FILTER (WHERE fetched_at < %(now)s - interval '48 hours')
            FROM latest""",
            {"now": now},
        )
        assert pairs == report.availability_pairs and old == 0
        assert abs(stale / pairs - STALE_PAIR_FRACTION) < 0.02
        assert abs(empty / pairs - EMPTY_PAIR_FRACTION) < 0.02
        single, skus = _row(
            conn,
            LATEST
            + """, malls AS (
                SELECT brand, product_id, count(DISTINCT mall_name) AS n FROM latest
                WHERE fetched_at >= %(now)s - interval '24 hours' AND sizes_in_stock <> '[]'::jsonb
                GROUP BY brand, product_id)
            SELECT count(*) FILTER (WHERE n = 1), (SELECT count(*) FROM raw_products) FROM malls""",
            {"now": now},
        )
        assert abs(single / skus - SINGLE_MALL_SKU_FRACTION) < 0.03
        # All snapshots within the last 72 h, several per pair.
        span, rows = _row(conn, "SELECT max(%(now)s - fetched_at), count(*) FROM raw_availability", {"now": now})
        assert span.total_seconds() <= 72 * 3600 and rows == report.availability_rows > 8 * pairs
        assert _row(conn, "SELECT count(*) FROM raw_stores WHERE mall_name = 'Dubai Hills Mall'")[0] >= 2
        brands_per_mall = _row(
            conn, "SELECT max(n) FROM (SELECT count(DISTINCT brand) n FROM raw_stores GROUP BY mall_name) t"
        )[0]
        assert brands_per_mall < 6
        bad = _row(
            conn,
            """SELECT count(*) FROM raw_products
               WHERE jsonb_array_length(image_urls) NOT BETWEEN 5 AND 7
                  OR jsonb_array_length(image_urls) <> jsonb_array_length(image_kinds)
                  OR image_kinds->>1 <> 'on_model' OR image_kinds->>0 <> 'flat'""",
        )[0]
        assert bad == 0
        url = _row(conn, "SELECT image_urls->>2 FROM raw_products WHERE external_id = 'NL-000001'")[0]
        assert url == "http://127.0.0.1:8090/catalog/northline/NL-000001/2.jpg"
        sizes = {
            r[0]
            for r in conn.execute("SELECT DISTINCT jsonb_array_elements_text(sizes_in_stock) FROM raw_availability")
        }
        assert {"XS", "XL", "38", "45", "ONE SIZE"} <= sizes
    # Idempotent: a second run replaces the rows.
    again = seed_dataset(staging_url, tmp_path, "small", seed=7, now=now, street_photos=0, render_images=False)
    with psycopg.connect(staging_url) as conn:
        counts = _row(
            conn,
            "SELECT (SELECT count(*) FROM raw_products), (SELECT count(*) FROM raw_stores),"
            " (SELECT count(*) FROM raw_availability)",
        )
    assert counts == (again.skus, again.stores, again.availability_rows)


def test_street_ground_truth_agrees_with_db_and_images(staging_url: str, tmp_path: Path, now: datetime) -> None:
    report = seed_dataset(staging_url, tmp_path, "small", seed=5, now=now, render_images=False, street_photos=8)
    gt = json.loads((tmp_path / "street" / "ground_truth.json").read_text())
    assert gt["version"] == 1 and len(gt["photos"]) == report.street_photos == 8
    malls = {p["mall"] for p in gt["photos"]}
    assert "Dubai Hills Mall" in malls and len(malls) >= 2
    items = [it for p in gt["photos"] for it in p["items"]]
    n = len(items)
    in_stock = sum(it["available_in_mall"] for it in items)
    fresh = sum(not it["in_catalog"] for it in items)
    assert 0.5 < in_stock / n < 0.9 and 0.03 < fresh / n < 0.35
    assert any(it["in_catalog"] and not it["available_in_mall"] for it in items)
    with psycopg.connect(staging_url) as conn:
        for photo in gt["photos"]:
            img = np.asarray(Image.open(tmp_path / "street" / photo["file"]).convert("RGB"))
            assert img.shape[:2] == (photo["height"], photo["width"])
            bg = background_colour(img, photo["items"])
            for it in photo["items"]:
                x0, y0, x1, y1 = it["bbox"]
                assert 0 <= x0 < x1 <= photo["width"] and 0 <= y0 < y1 <= photo["height"]
                assert (x1 - x0) * (y1 - y0) >= 0.03 * photo["width"] * photo["height"]
                assert garment_share(img, it, bg) > 0.4, (photo["photo_id"], it)
                if not it["in_catalog"]:
                    assert it["brand"] is None and it["available_in_mall"] is False
                    continue
                row = _row(
                    conn,
                    "SELECT product_type, colour, pattern FROM raw_products WHERE brand = %s AND external_id = %s",
                    (it["brand"], it["external_id"]),
                )
                assert row == (it["product_type"], it["colour"], it["pattern"])
                available = _row(
                    conn,
                    LATEST
                    + """SELECT EXISTS (SELECT 1 FROM latest WHERE brand = %(b)s AND product_id = %(p)s
                        AND mall_name = %(m)s AND sizes_in_stock <> '[]'::jsonb
                        AND fetched_at >= %(now)s - interval '24 hours')""",
                    {"b": it["brand"], "p": it["external_id"], "m": photo["mall"], "now": now},
                )[0]
                assert available == it["available_in_mall"], it
