"""Plan choice and SQL of the mall-filtered top-k query (no database needed)."""

from __future__ import annotations

import numpy as np

from unde.retrieval.cells import CellStats
from unde.retrieval.knn_plan import (
    MAX_EF,
    MAX_SCAN_TUPLES,
    OVERFETCH,
    SURVIVORS,
    Catalog,
    SearchPlan,
    accept,
    fallback,
    parse_version,
    plan_search,
    search_sql,
    settings_sql,
    split_cells,
    supports_iterative_scan,
)
from unde.retrieval.sku_cells import CANDIDATES_PER_K, SkuCounts

K = 50
COUNTS = {"big": 40_000, "mid": 3_000, "tiny": 800, "other": 20_000}
TOTAL = sum(COUNTS.values()) + 1_000  # + rows of other model versions in the global index
#: 4 cells on the unit circle (2-d vectors): cell i at angle i·90°.
CENTROIDS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float32)
CELLS = CellStats(CENTROIDS, per_brand={
    "big": np.array([10_000, 10_000, 10_000, 10_000]),
    "mid": np.array([0, 1_000, 1_000, 1_000]),
    "tiny": np.array([800, 0, 0, 0]),
    "other": np.array([5_000, 5_000, 5_000, 5_000]),
})
Q = np.array([1.0, 0.2], dtype=np.float32)  # nearest cells: 0, 1, 3, 2


#: SKU vectors per cell (5 photos a SKU), covering every photo of every brand.
SKUS = SkuCounts(CellStats(CENTROIDS, per_brand={
    brand: counts // 5 for brand, counts in CELLS.per_brand.items()}), photos=dict(COUNTS))


def catalog(*, version: tuple[int, ...] = (0, 6, 2), global_index: bool = True,
            cells: CellStats | None = CELLS, skus: SkuCounts | None = None) -> Catalog:
    return Catalog(version, COUNTS, TOTAL, global_index, cells, skus)


def text(plan: SearchPlan, model: str = "m1", filtered: bool = True) -> str:
    return search_sql(plan, model, filtered).as_string(None)


def test_filters_keeping_few_rows_are_exact_without_cells_and_fully_covered_with_them() -> None:
    for cat in (catalog(cells=None), catalog(cells=None, global_index=False)):
        assert plan_search(K, cat, ["tiny"], Q, 200) == SearchPlan("exact", limit=K)
        assert plan_search(K, cat, ["mid"], Q, 200, cell_rows=3_000).exact
    # with cells, a filter of ≤ cell_rows rows probes every cell holding them (= exact, and splittable)
    tiny = plan_search(K, catalog(), ["tiny"], Q, 200)
    assert (tiny.kind, tiny.cells) == ("cells", (0,))
    assert plan_search(K, catalog(), ["mid"], Q, 200, cell_rows=3_000).cells == (1, 2, 3)
    assert plan_search(K, catalog(), ["nobody"], Q, 200).exact  # unknown brand, nothing cached: exact
    small = Catalog((0, 6, 2), {"x": K}, TOTAL, True, CELLS)
    assert plan_search(K, small, ["x"], Q, 200, cell_rows=1).exact  # ≤ k rows: exact


def test_cells_plan_probes_the_nearest_cells_holding_the_filter() -> None:
    plan = plan_search(K, catalog(), None, Q, 200, cell_rows=5_000)
    assert plan == SearchPlan("cells", limit=K, cells=(0,), n_cells=4)  # cell 0 alone holds 15,800 rows
    # "mid" has no rows in cell 0: skipped; cells 1 then 3 reach 1,500 rows
    assert plan_search(K, catalog(), ["mid"], Q, 200, cell_rows=1_500).cells == (1, 3)
    assert plan_search(K, catalog(), ["mid"], Q, 200, cell_rows=1_000).cells == (1,)
    assert plan_search(K, catalog(), ["big", "mid"], Q, 200, cell_rows=25_000).cells == (0, 1, 3)
    # more than the filter has: every cell holding it
    assert plan_search(K, catalog(), ["mid", "tiny"], Q, 200, cell_rows=3_800).cells == (0, 1, 2, 3)
    assert plan_search(K, catalog(), ["big"], Q, 200, cell_rows=39_999).cells == (0, 1, 2, 3)
    # the same filter near another cell
    assert plan_search(K, catalog(), ["mid"], np.array([-1.0, -0.1], np.float32), 200,
                       cell_rows=1_000).cells == (2,)


def test_brands_unknown_to_the_cached_counts_are_scanned_exactly_in_the_first_part() -> None:
    plan = plan_search(K, catalog(), ["mid", "newcomer", "also-new"], Q, 200, cell_rows=1_500)
    assert plan.cells == (1, 3) and plan.unknown == ("also-new", "newcomer")
    first, second = (search_sql(plan, "m1", True, part).as_string(None) for part in (0, 0))
    assert "brand = ANY(%(unknown)s)" in first and first == second
    assert plan_search(K, catalog(), None, Q, 200).unknown == ()


def test_a_cells_scan_is_split_into_parts_of_about_equal_rows() -> None:
    rows = np.array([100, 90, 50, 40, 0])
    assert split_cells([0, 1, 2, 3], rows, 1) == ()
    assert split_cells([2], rows, 4) == ()
    assert split_cells([0, 1, 2, 3], rows, 2) == ((0, 3), (1, 2))  # 140 / 140
    parts = split_cells([0, 1, 2, 3], rows, 8)
    assert sorted(c for part in parts for c in part) == [0, 1, 2, 3] and len(parts) == 4
    plan = plan_search(K, catalog(), ["big"], Q, 200, cell_rows=39_999, parallel=2)
    assert plan.groups == ((0, 2), (1, 3)) and plan.parts == plan.groups and plan.cells == (0, 1, 2, 3)
    assert plan_search(K, catalog(), ["big"], Q, 200, cell_rows=39_999).parts == ((0, 1, 2, 3),)
    # only the first part scans the unassigned rows and the unknown brands
    plan = plan_search(K, catalog(), ["big", "newcomer"], Q, 200, cell_rows=39_999, parallel=2)
    first, second = (search_sql(plan, "m1", True, part).as_string(None) for part in (0, 1))
    assert "cell IS NULL" in first and "%(unknown)s" in first
    assert "cell IS NULL" not in second and "%(unknown)s" not in second and " UNION ALL " not in second


def test_without_cells_the_global_index_over_fetches() -> None:
    cat = catalog(cells=None)
    # 63,800 of 64,800 rows kept: ef = ⌈50 · 8 / 0.9846⌉ = 407
    assert plan_search(K, cat, None, Q, 200) == SearchPlan("global", limit=K * SURVIVORS, ef=407)
    assert plan_search(K, cat, None, Q, 600) == SearchPlan("global", limit=K * SURVIVORS, ef=600)
    wide = plan_search(K, cat, ["big", "other"], Q, 200)
    assert wide.kind == "global" and wide.ef is not None and wide.ef >= K * OVERFETCH
    # "mid" keeps 4.7% of the rows: ef would pass pgvector's cap → exact
    assert plan_search(K, cat, ["mid"], Q, 200, cell_rows=1_000).exact
    # use_cells=False: the same plans although the cells exist
    assert plan_search(K, catalog(), None, Q, 200, use_cells=False) == plan_search(K, cat, None, Q, 200)


def test_iterative_scans_on_pgvector_08() -> None:
    cat = catalog(version=(0, 8, 0), cells=None)
    assert plan_search(K, cat, None, Q, 200) == SearchPlan("global", limit=K, ef=200, iterative=True)
    assert plan_search(K, cat, ["mid"], Q, 200, cell_rows=1_000).iterative  # no cap on selectivity
    assert plan_search(K, cat, None, Q, 20).ef == K
    assert plan_search(K, catalog(version=(0, 8, 0)), None, Q, 200).kind == "cells"  # cells first
    assert supports_iterative_scan((0, 8)) and not supports_iterative_scan((0, 7, 4))


def test_neither_cells_nor_global_index_means_exact() -> None:
    cat = catalog(cells=None, global_index=False)
    for brands in (None, ["big"], ["mid", "other"]):
        assert plan_search(K, cat, brands, Q, 200, cell_rows=100) == SearchPlan("exact", limit=K)


def test_parse_version() -> None:
    assert parse_version("0.6.2") == (0, 6, 2)
    assert parse_version("0.8.0") == (0, 8, 0)
    assert parse_version(None) == (0,) and parse_version("") == (0,)


def test_fallback_escalates_ef_then_scans_exactly() -> None:
    plan = SearchPlan("global", limit=2 * K, ef=200)
    assert fallback(plan, K) == SearchPlan("global", limit=2 * K, ef=800)
    assert fallback(fallback(plan, K), K) == SearchPlan("global", limit=2 * K, ef=MAX_EF)
    assert fallback(SearchPlan("global", limit=2 * K, ef=MAX_EF), K) == SearchPlan("exact", limit=K)
    assert fallback(SearchPlan("global", limit=K, ef=200, iterative=True), K).exact
    assert fallback(SearchPlan("cells", limit=K, cells=(1, 2)), K) == SearchPlan("exact", limit=K)
    assert fallback(SearchPlan("exact", limit=K), K).exact


def test_accept_rules() -> None:
    assert accept(SearchPlan("exact", limit=K), 0, K, 10_000)  # exact is the truth, even empty
    cells = SearchPlan("cells", limit=K, cells=(0,))
    assert accept(cells, K, K, 10_000) and not accept(cells, K - 1, K, 10_000)
    assert accept(cells, 30, K, 30) and not accept(cells, 29, K, 30)  # filter has 30 rows in all
    over = SearchPlan("global", limit=2 * K, ef=400)
    assert accept(over, 2 * K, K, 10_000) and not accept(over, 2 * K - 1, K, 10_000)
    capped = SearchPlan("global", limit=2 * K, ef=MAX_EF)  # nothing to escalate: k rows will do
    assert accept(capped, K, K, 10_000) and not accept(capped, K - 1, K, 10_000)
    iterative = SearchPlan("global", limit=K, ef=200, iterative=True)
    assert accept(iterative, K, K, 10_000) and not accept(iterative, K - 1, K, 10_000)


def test_cells_sql_scans_the_cells_and_the_unassigned_rows_exactly() -> None:
    plan = SearchPlan("cells", limit=K, cells=(1, 3), n_cells=4)
    sql_text = text(plan, model="v'1")
    assert sql_text.count("(embedding <=> %(q)b) + 0 AS distance") == 2  # no HNSW index scan
    assert "cell = ANY(%(cells)s::int4[])" in sql_text and "(cell IS NULL OR cell >= 4)" in sql_text
    assert " UNION ALL " in sql_text and "ORDER BY distance, id LIMIT 50)" in sql_text
    # the scan ranks (id, distance) only; the k winners are joined to their rows afterwards
    assert sql_text.startswith("WITH hits AS MATERIALIZED ((SELECT id, (embedding")
    assert "JOIN sku_image_embeddings AS e USING (id)" in sql_text
    assert sql_text.endswith("ORDER BY hits.distance, hits.id")
    assert sql_text.count("model_version = 'v''1' AND embedding IS NOT NULL") == 2
    assert sql_text.count("brand = ANY(%(brands)s)") == 2
    assert "brand = ANY" not in text(plan, filtered=False)
    assert settings_sql(plan) == []


def test_exact_and_global_sql() -> None:
    exact = text(SearchPlan("exact", limit=K))
    assert "SELECT id, (embedding <=> %(q)b) + 0 AS distance" in exact and "cell" not in exact
    assert "ORDER BY distance, id LIMIT 50)" in exact and exact.endswith("ORDER BY hits.distance, hits.id")
    assert settings_sql(SearchPlan("exact", limit=K)) == []
    plan = SearchPlan("global", limit=2 * K, ef=442)
    over = text(plan, filtered=False)
    assert "ORDER BY embedding <=> %(q)b LIMIT 100" in over and "+ 0" not in over
    assert "brand = ANY" not in over and "MATERIALIZED" not in over
    assert settings_sql(plan) == [("hnsw.ef_search", "442")]
    iterative = SearchPlan("global", limit=K, ef=200, iterative=True)
    assert "MATERIALIZED" in text(iterative) and text(iterative).endswith("ORDER BY distance, id")
    assert settings_sql(iterative) == [("hnsw.ef_search", "200"), ("hnsw.iterative_scan", "relaxed_order"),
                                       ("hnsw.max_scan_tuples", str(MAX_SCAN_TUPLES))]


# --- the SKU stage ------------------------------------------------------------------------------

def test_skus_plan_when_the_sku_vectors_cover_every_photo_of_the_filter() -> None:
    cat = catalog(skus=SKUS)
    plan = plan_search(K, cat, ["big"], Q, 200, sku_rows=3_000)  # 2,000 SKUs a cell: cells 0 and 1
    assert plan == SearchPlan("skus", limit=K, cells=(0, 1), n_cells=4, candidates=CANDIDATES_PER_K * K,
                              pairs=((0, "big"), (1, "big")))
    assert plan_search(K, cat, ["mid"], Q, 200, sku_rows=300).cells == (1, 3)  # mid has no SKU in cell 0
    # only the (cell, brand) pairs holding SKUs are searched; no filter: whole cells
    assert plan_search(K, cat, ["tiny", "mid"], Q, 200, sku_rows=300).pairs == ((0, "tiny"), (1, "mid"))
    assert plan_search(K, cat, None, Q, 200, sku_rows=100) == SearchPlan(
        "skus", limit=K, cells=(0,), n_cells=4, candidates=CANDIDATES_PER_K * K)
    mixed = plan_search(K, cat, ["big", "nobody"], Q, 200)
    assert (mixed.kind, mixed.unknown) == ("skus", ("nobody",))  # new brands: ranked exactly beside
    assert plan_search(K, cat, ["big"], Q, 200, use_skus=False).kind == "cells"
    assert plan_search(K, cat, ["big"], Q, 200, use_cells=False).kind == "global"
    assert plan_search(K, catalog(cells=None, skus=SKUS), ["big"], Q, 200).kind == "global"


def test_a_brand_whose_sku_vectors_miss_photos_is_served_by_the_photo_cells() -> None:
    short = SkuCounts(SKUS.cells, photos={**COUNTS, "mid": COUNTS["mid"] - 1})  # one photo not covered
    cat = catalog(skus=short)
    assert plan_search(K, cat, ["mid"], Q, 200).kind == "cells"
    assert plan_search(K, cat, ["big", "mid"], Q, 200).kind == "cells"
    assert plan_search(K, cat, None, Q, 200).kind == "cells"
    assert plan_search(K, cat, ["big", "other"], Q, 200).kind == "skus"  # other brands keep the SKU stage
    assert catalog(skus=SKUS).skus_ready(None) and not catalog().skus_ready(None)


def test_skus_sql_ranks_candidate_skus_then_all_their_photos() -> None:
    plan = SearchPlan("skus", limit=K, cells=(0, 1), n_cells=4, candidates=150, pairs=((0, "b"),))
    sql_text = text(plan, model="v'1")
    assert sql_text.startswith("WITH skus AS MATERIALIZED (SELECT s.brand, s.sku_id FROM unnest(%(pair_cells)s"
                               "::int4[], %(pair_brands)s::text[]) AS k(cell, brand) JOIN sku_embeddings AS s "
                               "ON s.model_version = 'v''1' AND s.cell = k.cell AND s.brand = k.brand "
                               "ORDER BY (s.embedding <=> %(q)b) + 0, s.brand, s.sku_id LIMIT 150), "
                               "hits AS MATERIALIZED (")
    assert "JOIN sku_image_embeddings AS p ON p.model_version = 'v''1' AND p.brand = skus.brand" in sql_text
    assert "ORDER BY distance, id LIMIT 50)" in sql_text and sql_text.endswith("ORDER BY hits.distance, hits.id")
    assert "%(unknown)s" not in sql_text and "%(cells)s" not in sql_text
    unfiltered = text(plan, filtered=False)
    assert "WHERE s.model_version = 'm1' AND s.cell = ANY(%(cells)s::int4[]) ORDER BY" in unfiltered
    assert "brand = ANY" not in unfiltered and "pair_" not in unfiltered
    with_new = text(SearchPlan("skus", limit=K, cells=(0,), n_cells=4, candidates=150, unknown=("n",)))
    assert "UNION ALL (SELECT id, (embedding <=> %(q)b) + 0 AS distance FROM sku_image_embeddings" in with_new
    assert with_new.count("brand = ANY(%(unknown)s)") == 1
    assert settings_sql(plan) == []
    assert accept(plan, K, K, 10_000) and not accept(plan, K - 1, K, 10_000) and accept(plan, 30, K, 30)
    assert fallback(plan, K) == SearchPlan("exact", limit=K)
