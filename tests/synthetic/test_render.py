"""Product and street renders: determinism, sizes, kinds, ground-truth boxes."""

from __future__ import annotations

import hashlib
from datetime import datetime

import numpy as np
from synthetic_helpers import background_colour, garment_share

from unde.synthetic.availability import plan_availability
from unde.synthetic.catalog import generate_catalog
from unde.synthetic.render import image_kinds, jpeg_bytes, render_product_image, render_product_images
from unde.synthetic.street import MIN_BOX_FRACTION, render_street_photo


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_product_images_are_deterministic_and_seed_dependent() -> None:
    sku = generate_catalog(7, "small").skus[3]
    a = [_digest(jpeg_bytes(img)) for img in render_product_images(sku)]
    b = [_digest(jpeg_bytes(render_product_image(sku, r))) for r in range(sku.n_images)]
    assert a == b  # batch and one-by-one rendering agree byte for byte
    other = generate_catalog(8, "small").skus[3]
    assert _digest(jpeg_bytes(render_product_image(other, 0))) != a[0]


def test_product_image_views() -> None:
    cat = generate_catalog(7, "small")
    seen = set()
    for sku in cat.skus[:: len(cat.skus) // 12]:
        kinds = image_kinds(sku)
        assert kinds[:3] == ["flat", "on_model", "detail"]
        assert set(kinds) <= {"flat", "on_model", "detail"}
        for rank in (0, 1, 2):
            img = render_product_image(sku, rank)
            assert max(img.size) == 600 and img.mode == "RGB"
            data = jpeg_bytes(img)
            assert data[:3] == b"\xff\xd8\xff"
            seen.add(_digest(data))
        flat = np.asarray(render_product_image(sku, 0), dtype=np.float32)
        assert (flat[:5, :5] > 240).all()  # white background
        assert (np.abs(flat - 250).max(axis=2) > 6).mean() > 0.1  # garment covers the frame
    assert len(seen) == 3 * 13 or len(seen) >= 30


def test_street_photos_ground_truth(now: datetime) -> None:
    cat = generate_catalog(7, "small")
    in_stock = plan_availability(cat, 7, now).in_stock_malls()
    first = render_street_photo(cat, in_stock, "Dubai Hills Mall", 0, 7)
    again = render_street_photo(cat, in_stock, "Dubai Hills Mall", 0, 7)
    assert jpeg_bytes(first.image) == jpeg_bytes(again.image) and first.items == again.items
    other = render_street_photo(cat, in_stock, "Dubai Hills Mall", 0, 8)
    assert jpeg_bytes(other.image) != jpeg_bytes(first.image)
    for index in range(3):
        photo = render_street_photo(cat, in_stock, "Yas Mall", index, 11)
        w, h = photo.image.size
        assert (w, h) == (800, 1000)
        img = np.asarray(photo.image)
        bg = background_colour(img, photo.items)
        assert 1 <= len(photo.items) <= 4
        for item in photo.items:
            x0, y0, x1, y1 = item["bbox"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert (x1 - x0) * (y1 - y0) >= MIN_BOX_FRACTION * w * h
            assert garment_share(img, item, bg) > 0.4, item
            if item["in_catalog"]:
                sku = cat.sku(item["brand"], item["external_id"])
                assert sku is not None and sku.colour == item["colour"]
                assert item["available_in_mall"] == ("Yas Mall" in in_stock[sku.key])
            else:
                assert item["brand"] is None and not item["available_in_mall"]
