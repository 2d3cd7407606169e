"""Plan choice and SQL of the mall-filtered top-k query (no database needed)."""

from __future__ import annotations

from unde.retrieval.brand_index import brand_index_name, shard_count, shard_index_name
from unde.retrieval.knn_plan import (
    MAX_EF,
    Catalog,
    Part,
    SearchPlan,
    accept,
    build_catalog,
    ef_tier,
    fallback,
    plan_search,
    statements,
)

K = 50
COUNTS = {"big": 40_000, "mid": 3_000, "tiny": 800, "other": 20_000, "unindexed": 5_000}


def catalog(*, version: tuple[int, ...] = (0, 6, 2), global_index: bool = True) -> Catalog:
    return Catalog(version, COUNTS, sum(COUNTS.values()) + 1_000,  # + other model versions
                   frozenset({"big", "mid", "tiny", "other"}), global_index)


def test_one_brand_is_searched_in_its_own_index() -> None:
    # the whole budget, capped at 5·√rows = 274 → tier 400
    plan = plan_search(K, catalog(), ["mid"], 200)
    assert plan == SearchPlan("union", ef=400, limit=K, indexed=(Part("mid", K, 400),))
    assert plan_search(K, catalog(), ["big"], 200).indexed == (Part("big", K, MAX_EF),)


def test_budget_is_shared_by_rows_and_small_or_unindexed_brands_are_scanned_exactly() -> None:
    plan = plan_search(K, catalog(global_index=False), ["big", "mid", "tiny", "unindexed", "newcomer"], 200)
    assert plan.kind == "union"
    # big gets ~93% of the 1000 budget (tier 1000), mid the floor 2k = 100
    assert {p.brand: p.ef for p in plan.indexed} == {"big": 1000, "mid": 100}
    # tiny: below EXACT_MAX_ROWS; unindexed: no valid index yet; newcomer: not in the counts
    assert plan.exact_brands == ("newcomer", "tiny", "unindexed")


def test_no_filter_and_wide_filters_use_the_global_index() -> None:
    assert plan_search(K, catalog(), None, 200) == SearchPlan("global", ef=400, limit=2 * K)
    wide = plan_search(K, catalog(), ["big", "other", "mid", "unindexed"], 200)
    assert wide.kind == "global" and wide.ef is not None and wide.ef >= K * 8


def test_tiny_filters_are_exact_and_no_index_means_exact() -> None:
    assert plan_search(K, catalog(), ["tiny"], 200).exact
    no_indexes = Catalog((0, 6, 2), COUNTS, 70_000, frozenset(), global_index=False)
    assert plan_search(K, no_indexes, None, 200).exact
    assert plan_search(K, no_indexes, ["mid"], 200).exact


def test_without_global_index_no_filter_is_a_union_plus_every_other_brand_exactly() -> None:
    plan = plan_search(K, catalog(global_index=False), None, 200)
    assert plan.kind == "union" and plan.exact_rest and not plan.exact_brands
    sql_text = " ".join(s[1].as_string(None) for s in statements(plan, "m1", filtered=False))
    assert "NOT (brand = ANY(" in sql_text


def test_iterative_scan_on_pgvector_08() -> None:
    plan = plan_search(K, catalog(version=(0, 8, 0)), None, 200)
    assert plan == SearchPlan("global", ef=200, limit=K, iterative=True)
    # one brand of 4%: an iterative scan would visit ~25× ef tuples; its own index is cheaper
    assert plan_search(K, catalog(version=(0, 8, 0)), ["mid"], 200).kind == "union"
    (settings, statement, _), = statements(plan, "m1", filtered=False)
    assert ("hnsw.iterative_scan", "relaxed_order") in settings and "MATERIALIZED" in statement.as_string(None)


def test_ef_tiers() -> None:
    assert [ef_tier(ef, K) for ef in (1, 100, 101, 250, 700, 1000, 5000)] == [
        100, 100, 200, 400, 800, 1000, 1000]


def test_union_statements_one_per_tier_with_literals() -> None:
    plan = SearchPlan("union", ef=1000, limit=K, indexed=(Part("O'Neill", K, 1000), Part("b", 30, 100)),
                      exact_brands=("c",))
    out = statements(plan, "v'1", filtered=True)
    assert [settings for settings, _, _ in out] == [[("hnsw.ef_search", "100")],
                                                     [("hnsw.ef_search", "1000")]]
    assert [parts for _, _, parts in out] == [1, 1]
    first, second = (statement.as_string(None) for _, statement, _ in out)
    assert "brand = 'b' AND model_version = 'v''1'" in first
    assert "brand = ANY('{c}')" in first and "+ 0" in first  # the exact part rides in the first
    assert "brand = 'O''Neill' AND model_version = 'v''1'" in second and "ANY(" not in second
    assert "%(brands)s" not in first + second  # no parameter where a literal must be


def test_accept_and_fallback() -> None:
    cat = catalog()
    short_global = SearchPlan("global", ef=200, limit=2 * K)
    assert not accept(short_global, 70, True, K) and accept(short_global, 100, True, K)
    assert fallback(short_global, K, cat, ["mid"], 200, True) == SearchPlan("global", ef=800, limit=2 * K)
    capped = SearchPlan("global", ef=MAX_EF, limit=2 * K)
    assert accept(capped, K, True, K) and not accept(capped, K - 1, True, K)
    assert fallback(capped, K, cat, ["mid"], 200, True).kind == "union"
    assert fallback(capped, K, cat, ["mid"], 200, False) == SearchPlan(
        "union", limit=K, exact_brands=("mid",))
    assert fallback(capped, K, cat, None, 200, False).exact
    union = SearchPlan("union", ef=100, limit=K, indexed=(Part("mid", K, 100),))
    assert not accept(union, K, False, K) and accept(union, K, True, K)
    assert accept(SearchPlan("union", limit=K, exact_brands=("x",)), 3, False, K)


def test_shard_count_keeps_shards_near_shard_rows() -> None:
    assert [shard_count(rows, 8_000) for rows in (100, 8_000, 8_001, 16_001, 38_685, 10**7)] == [
        1, 1, 2, 4, 8, 16]


def test_catalog_uses_a_split_only_when_every_shard_index_is_valid() -> None:
    names = {brand_index_name(b, "m1") for b in ("big", "mid")}
    names |= {shard_index_name("big", "m1", i, 4) for i in range(4)}
    names |= {shard_index_name("mid", "m1", i, 2) for i in range(1)}  # shard 1 of 2 missing
    cat = build_catalog((0, 6, 2), "m1", {"big": 40_000, "mid": 3_000}, 43_000, names, True)
    assert cat.shards == {"big": 4} and cat.indexed_brands == {"big", "mid"}


def test_a_split_brand_is_searched_in_every_shard() -> None:
    cat = Catalog((0, 6, 2), COUNTS, sum(COUNTS.values()), frozenset({"big", "mid"}), False,
                  {"big": 4})
    plan = plan_search(K, cat, ["big"], 200)
    # 10K rows per shard: whole budget / 4 × SHARD_EF_SCALE (1.0) = 250 → tier 400
    assert plan.indexed == tuple(Part("big", K, 400, i, 4) for i in range(4))
    sql_text = " ".join(s[1].as_string(None) for s in statements(plan, "m1", filtered=True))
    for i in range(4):
        assert f"brand = 'big' AND model_version = 'm1' AND (hashtext(sku_id) & 3) = {i} " in sql_text
    assert plan_search(K, cat, ["big"], 200, use_shards=False).indexed == (Part("big", K, MAX_EF),)
    # a shard's size is only known on average: it must return min(k, half its share)
    small = Catalog((0, 6, 2), {"big": 1_520}, 1_520, frozenset(), False, {"big": 16})
    assert {p.expected for p in plan_search(K, small, ["big"], 200).indexed} == {1_520 // 32}
