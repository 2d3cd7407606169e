"""Filtered top-k on real pgvector 0.6 indexes (global + one partial HNSW per brand) equals
the exact filtered top-k, whatever the filter and whichever brand indexes exist."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from unde.db.pool import open_pool
from unde.errors import BadInput
from unde.retrieval.brand_index import brand_index_name, ensure_brand_index, ensure_brand_shards
from unde.retrieval.knn import (
    ImageHit,
    KnnQuery,
    best_per_sku,
    forget_profile,
    knn_images,
    knn_images_sync,
    plan_for_sync,
)
from unde.retrieval.knn_plan import Part, SearchPlan

from .conftest import (
    DIM,
    MODEL,
    Catalog,
    K,
    available,
    brand_filters,
    copy_rows,
    exact_ids,
    queries,
    units,
)

#: ef ≥ the mid brand (~900 photos): an HNSW search then visits the whole graph, so its
#: top-k is exact and the answer must equal the exact one row for row. `EXHAUSTIVE` puts every
#: search there: global ef_search 1000, and a union budget giving every brand ef 1000.
EF_ALL = 1000
EXHAUSTIVE: dict[str, Any] = {"ef_search": EF_ALL, "ef_budget": 10**6, "exact_max_rows": 0}


def plan_of(conn: psycopg.Connection, brand_filter: list[str] | None, **options: Any) -> SearchPlan:
    return plan_for_sync(conn, KnnQuery(K, MODEL, brand_filter, **options))


def assert_exact(hits: list[ImageHit], truth: list[int], brand_filter: list[str] | None) -> None:
    assert [h.id for h in hits] == truth, brand_filter
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    if brand_filter is not None:
        assert {h.brand for h in hits} <= set(brand_filter)


def _drop_index(conn: psycopg.Connection, brand: str) -> None:
    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(brand_index_name(brand, MODEL))))


async def test_partial_index_union_equals_exact_search_for_every_selectivity(
        loaded_url: str, pool: AsyncConnectionPool, catalog: Catalog) -> None:
    _, brands, _ = catalog
    with psycopg.connect(loaded_url, autocommit=True) as conn:
        register_vector(conn)
        kinds = set()
        for brand_filter in brand_filters(brands):
            plan = plan_of(conn, brand_filter, **EXHAUSTIVE)
            kinds.add(plan.kind)
            if brand_filter is not None and len(brand_filter) <= 2:
                assert plan.kind == "union" and len(plan.indexed) == len(brand_filter)
            for q in queries(catalog, 5):
                hits = await knn_images(pool, q, k=K, model_version=MODEL, brands=brand_filter,
                                        **EXHAUSTIVE)
                truth = exact_ids(conn, q, brand_filter, K)
                assert len(hits) == min(K, available(brands, brand_filter)) == len(truth)
                assert_exact(hits, truth, brand_filter)
        assert kinds == {"union", "global"}  # many brands or no filter: the global index


async def test_default_plan_equals_exact_search_for_every_selectivity(
        loaded_url: str, pool: AsyncConnectionPool, catalog: Catalog) -> None:
    """Default knobs: brands this small are scanned exactly."""
    _, brands, _ = catalog
    with psycopg.connect(loaded_url, autocommit=True) as conn:
        register_vector(conn)
        for brand_filter in brand_filters(brands)[:-1]:
            for q in queries(catalog, 5):
                hits = await knn_images(pool, q, k=K, model_version=MODEL, brands=brand_filter,
                                        ef_search=40)
                truth = exact_ids(conn, q, brand_filter, K)
                assert len(hits) == min(K, available(brands, brand_filter)) == len(truth)
                assert_exact(hits, truth, brand_filter)


async def test_hnsw_paths_return_full_results_with_high_recall(
        loaded_url: str, pool: AsyncConnectionPool, catalog: Catalog) -> None:
    """Forced onto HNSW (exact_max_rows=0) at ef_search 40: never short, recall ≥ 0.95."""
    _, brands, _ = catalog
    recalls = []
    with psycopg.connect(loaded_url, autocommit=True) as conn:
        register_vector(conn)
        for brand_filter in brand_filters(brands):
            for q in queries(catalog, 6):
                hits = await knn_images(pool, q, k=K, model_version=MODEL, brands=brand_filter,
                                        ef_search=40, exact_max_rows=0)
                truth = exact_ids(conn, q, brand_filter, K)
                assert len(hits) == min(K, available(brands, brand_filter)) == len(truth)
                assert len({h.id for h in hits}) == len(hits)
                recalls.append(len({h.id for h in hits} & set(truth)) / len(truth))
    assert min(recalls) >= 0.9 and float(np.mean(recalls)) >= 0.95, recalls


async def test_naive_filtered_hnsw_query_returns_too_few_rows(loaded_url: str, catalog: Catalog) -> None:
    """The failure knn_images exists to avoid: post-filtered HNSW at ef_search 40."""
    _, brands, _ = catalog
    shortest = K
    with psycopg.connect(loaded_url, autocommit=True) as conn:
        register_vector(conn)
        for brand_filter in brand_filters(brands)[:-1]:
            for q in queries(catalog, 4):
                with conn.transaction():
                    conn.execute("SET LOCAL hnsw.ef_search = 40")
                    rows = conn.execute("SELECT id FROM sku_image_embeddings WHERE brand = ANY(%s) "
                                        "ORDER BY embedding <=> %s LIMIT 50", (brand_filter, q)).fetchall()
                shortest = min(shortest, len(rows))
                hits = knn_images_sync(conn, q, k=K, model_version=MODEL, brands=brand_filter,
                                       ef_search=40, exact_max_rows=0)
                assert len(hits) == min(K, available(brands, brand_filter))
    assert shortest < K


async def test_brands_without_index_are_scanned_exactly(knn_clone_url: str, catalog: Catalog) -> None:
    """Some brand indexes missing (not built yet): still the exact answer, via exact scans."""
    _, brands, _ = catalog
    missing = {"b0", "b3", "b6"}
    with psycopg.connect(knn_clone_url, autocommit=True) as conn:
        register_vector(conn)
        for brand in missing:
            _drop_index(conn, brand)
        unions = 0
        for brand_filter in [*brand_filters(brands), ["b0", "b1"], ["b3"]]:
            plan = plan_of(conn, brand_filter, **EXHAUSTIVE)
            if plan.kind == "union":
                assert brand_filter is not None
                unions += 1
                assert set(plan.exact_brands) == set(brand_filter) & missing
                assert {part[0] for part in plan.indexed} == set(brand_filter) - missing
            for q in queries(catalog, 4, seed=21):
                hits = knn_images_sync(conn, q, k=K, model_version=MODEL, brands=brand_filter,
                                       **EXHAUSTIVE)
                assert_exact(hits, exact_ids(conn, q, brand_filter, K), brand_filter)
        assert unions >= 4


async def test_index_dropped_after_the_plan_was_cached_is_caught(
        knn_clone_url: str, catalog: Catalog) -> None:
    """The cached catalog still lists a dropped index: the brand's subquery is then planned
    without it (global index + filter, or an exact scan); the answer stays exact."""
    mid = ["b3"]
    with psycopg.connect(knn_clone_url, autocommit=True) as conn:
        register_vector(conn)
        knn_images_sync(conn, queries(catalog, 1, seed=5)[0], k=K, model_version=MODEL,
                        brands=mid, exact_max_rows=0)
        _drop_index(conn, mid[0])
        assert plan_of(conn, mid, exact_max_rows=0).indexed  # still cached as indexed
        for q in queries(catalog, 4, seed=6):
            hits = knn_images_sync(conn, q, k=K, model_version=MODEL, brands=mid,
                                   ef_budget=100, exact_max_rows=0)
            assert_exact(hits, exact_ids(conn, q, mid, K), mid)


async def test_new_brand_appears_while_counts_are_cached(knn_clone_url: str, catalog: Catalog) -> None:
    """A brand written after the pool cached its counts is found at once (exact scan), and
    through its own index once the indexer has created it and the counts are refreshed."""
    pool = await open_pool(knn_clone_url, name="test", min_size=1, max_size=1, vector=True)
    try:
        q = queries(catalog, 1, seed=31)[0]
        mall = ["b1", "b2", "newbrand"]
        before = await knn_images(pool, q, k=K, model_version=MODEL, brands=mall, exact_max_rows=0)
        assert before and all(h.brand != "newbrand" for h in before)
        rng = np.random.default_rng(3)
        near = q + 0.3 * units(rng, 80)  # the new brand's photos are the nearest of all
        near /= np.linalg.norm(near, axis=1, keepdims=True)
        with psycopg.connect(knn_clone_url, autocommit=True) as conn:
            register_vector(conn)
            copy_rows(conn, near.astype(np.float32), ["newbrand"] * 80, [f"N{i}" for i in range(80)])
            for brand_filter in (mall, None):
                hits = await knn_images(pool, q, k=K, model_version=MODEL, brands=brand_filter,
                                        **EXHAUSTIVE)
                assert_exact(hits, exact_ids(conn, q, brand_filter, K), brand_filter)
                assert sum(h.brand == "newbrand" for h in hits) >= 40
            assert ensure_brand_index(conn, "newbrand", MODEL) is True
            forget_profile(pool)
            forget_profile(conn)
            plan = plan_of(conn, mall, **EXHAUSTIVE)
            assert Part("newbrand", K, EF_ALL) in plan.indexed
            hits = await knn_images(pool, q, k=K, model_version=MODEL, brands=mall,
                                    **EXHAUSTIVE)
            assert_exact(hits, exact_ids(conn, q, mall, K), mall)
    finally:
        await pool.close()


async def test_stale_counts_after_deletes_are_caught(knn_clone_url: str, catalog: Catalog) -> None:
    """Cached counts say a brand has more rows than it has now: its subquery looks short, the
    plan is redone with fresh counts and the answer is still exact."""
    _, brands, _ = catalog
    small = brand_filters(brands)[0]
    assert small is not None
    with psycopg.connect(knn_clone_url, autocommit=True) as conn:
        register_vector(conn)
        q = queries(catalog, 1, seed=41)[0]
        knn_images_sync(conn, q, k=K, model_version=MODEL, brands=small, exact_max_rows=0)
        before = plan_of(conn, small, exact_max_rows=0)
        assert [part[:2] for part in before.indexed] == [(small[0], K)]
        conn.execute("DELETE FROM sku_image_embeddings WHERE id IN (SELECT id FROM sku_image_embeddings"
                     " WHERE brand = %s AND model_version = %s ORDER BY id DESC OFFSET 30)",
                     (small[0], MODEL))
        hits = knn_images_sync(conn, q, k=K, model_version=MODEL, brands=small, **EXHAUSTIVE)
        assert len(hits) == 30
        assert_exact(hits, exact_ids(conn, q, small, K), small)


async def test_scores_are_cosine_similarity(pool: AsyncConnectionPool, catalog: Catalog) -> None:
    vectors = catalog[0]
    q = queries(catalog, 1)[0]
    for brand_filter in (None, ["b0"]):
        hits = await knn_images(pool, q, k=5, model_version=MODEL, brands=brand_filter,
                                exact_max_rows=0)
        for hit in hits:
            assert math.isclose(hit.score, float(vectors[hit.id - 1] @ q), abs_tol=1e-5)
        assert hits[0].metadata == {"name": "x"}


async def test_empty_and_unknown_brand_filters(pool: AsyncConnectionPool) -> None:
    q = np.ones(DIM, dtype=np.float32)
    assert await knn_images(pool, q, k=5, model_version=MODEL, brands=[]) == []
    assert await knn_images(pool, q, k=5, model_version=MODEL, brands=["nobody"]) == []
    assert await knn_images(pool, q, k=5, model_version=MODEL, brands=["nobody", "b1"],
                            exact_max_rows=0) != []
    assert await knn_images(pool, q, k=5, model_version="never-indexed", brands=None) == []


async def test_bad_vectors_and_k_are_rejected(pool: AsyncConnectionPool) -> None:
    with pytest.raises(BadInput):
        await knn_images(pool, [float("nan")] * DIM, k=5, model_version=MODEL, brands=None)
    with pytest.raises(BadInput):
        await knn_images(pool, [], k=5, model_version=MODEL, brands=None)
    with pytest.raises(BadInput):
        await knn_images(pool, [1.0] * DIM, k=0, model_version=MODEL, brands=None)


def test_best_per_sku_keeps_the_best_photo_per_sku() -> None:
    def hit(i: int, sku: str, score: float, brand: str = "b") -> ImageHit:
        return ImageHit(i, brand, sku, f"u{i}", i, score, {"n": i})

    skus = best_per_sku([hit(1, "A", 0.9), hit(2, "B", 0.95), hit(3, "A", 0.97),
                         hit(4, "A", 0.5, brand="c")])
    assert [(s.brand, s.sku_id, s.score) for s in skus] == [("b", "A", 0.97), ("b", "B", 0.95),
                                                              ("c", "A", 0.5)]
    assert skus[0].best_image_url == "u3" and [h.id for h in skus[0].hits] == [3, 1]


async def test_split_brand_shards_equal_exact_search_and_use_their_indexes(
        knn_clone_url: str, catalog: Catalog) -> None:
    """The largest brand split into 4 shard indexes: every shard subquery runs on its own
    index, and the union of shards answers exactly, alone and in a mall."""
    _, brands, _ = catalog
    largest = brand_filters(brands)[1]
    assert largest is not None
    with psycopg.connect(knn_clone_url, autocommit=True) as conn:
        register_vector(conn)
        assert ensure_brand_shards(conn, largest[0], MODEL, 4, concurrently=False) == 4
        assert ensure_brand_shards(conn, largest[0], MODEL, 4) == 0  # idempotent
        conn.execute("ANALYZE sku_image_embeddings")
        forget_profile(conn)
        # ef 400 ≥ a shard's ~225 rows: each shard search is exhaustive, so the answer is exact
        options: dict[str, Any] = {"ef_search": 300, "ef_budget": 10**6, "exact_max_rows": 0}
        smallest = brand_filters(brands)[0]
        assert smallest is not None
        for brand_filter in (largest, [*smallest, *largest]):
            plan = plan_of(conn, brand_filter, **options)
            shards = [p for p in plan.indexed if p.brand == largest[0]]
            assert [(p.shard, p.shards, p.ef) for p in shards] == [(i, 4, 400) for i in range(4)]
            assert plan_of(conn, brand_filter, use_shards=False, **options).indexed[-1].shards == 1
            for q in queries(catalog, 4, seed=51):
                hits = knn_images_sync(conn, q, k=K, model_version=MODEL, brands=brand_filter,
                                       **options)
                assert_exact(hits, exact_ids(conn, q, brand_filter, K), brand_filter)
        with conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")  # tiny table: make the choice visible
            for i in range(4):
                explain = conn.execute(
                    "EXPLAIN SELECT id FROM sku_image_embeddings WHERE brand = %s AND model_version = %s"
                    f" AND (hashtext(sku_id) & 3) = {i} ORDER BY embedding <=> %s LIMIT 50",
                    (largest[0], MODEL, queries(catalog, 1)[0])).fetchall()
                assert any("_hnsw_b_s4_" in row[0] for row in explain), explain
