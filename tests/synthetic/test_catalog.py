"""Catalog generation: determinism, malls, stores, image counts, scales."""

from __future__ import annotations

from collections import Counter

import pytest

from unde.synthetic.catalog import SKUS_PER_SCALE, generate_catalog
from unde.vocabulary import CATEGORY_OF_TYPE, COLOUR_BY_NAME, MATERIALS, PATTERNS


def test_same_seed_same_catalog_and_different_seed_differs() -> None:
    a, b = generate_catalog(7, "small"), generate_catalog(7, "small")
    assert a == b
    c = generate_catalog(8, "small")
    assert c.skus != a.skus


def test_malls_brands_and_stores() -> None:
    cat = generate_catalog(7, "small")
    names = [m.name for m in cat.malls]
    assert len(names) >= 8 and "Dubai Hills Mall" in names
    assert len(cat.brands) == 6
    malls_per_brand = Counter(s.brand for s in cat.stores)
    assert set(malls_per_brand) == {b.name for b in cat.brands}
    assert all(4 <= n <= 6 for n in malls_per_brand.values())
    # A brand has at most one store per mall, and no mall hosts every brand.
    assert len({(s.brand, s.mall_name) for s in cat.stores}) == len(cat.stores)
    brands_per_mall = Counter(s.mall_name for s in cat.stores)
    assert max(brands_per_mall.values()) < len(cat.brands)
    assert brands_per_mall["Dubai Hills Mall"] >= 2
    assert all(s.address and s.floor and s.name for s in cat.stores)


def test_skus_are_well_formed() -> None:
    cat = generate_catalog(7, "small")
    assert len(cat.skus) == SKUS_PER_SCALE["small"]
    assert len({s.key for s in cat.skus}) == len(cat.skus)
    for s in cat.skus:
        assert 5 <= s.n_images <= 7
        assert CATEGORY_OF_TYPE[s.product_type] == s.category
        assert s.colour in COLOUR_BY_NAME and s.secondary_colour in COLOUR_BY_NAME
        assert s.colour != s.secondary_colour
        assert s.pattern in PATTERNS and s.material in MATERIALS
        assert s.currency == "AED" and s.price > 0 and s.price.as_tuple().exponent == -2
    assert len({s.category for s in cat.skus}) == 6
    assert len({s.pattern for s in cat.skus}) == len(PATTERNS)
    # Same type and colour still differ in design.
    groups: dict[tuple[str, str], set[object]] = {}
    for s in cat.skus:
        groups.setdefault((s.product_type, s.colour), set()).add(s.design)
    assert all(len(v) >= 1 for v in groups.values())
    assert sum(len(v) for v in groups.values()) == len(cat.skus)


def test_medium_scale() -> None:
    cat = generate_catalog(3, "medium")
    assert len(cat.skus) == SKUS_PER_SCALE["medium"] == 2400
    assert SKUS_PER_SCALE["full"] == 47000


def test_unknown_scale() -> None:
    with pytest.raises(ValueError):
        generate_catalog(7, "huge")
