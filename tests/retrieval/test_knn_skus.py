"""The SKU stage (`unde.retrieval.sku_cells`) on real pgvector 0.6.2: SKU vectors are the mean of
each SKU's photos in its nearest cell; a skus plan equals the exact ranking of every photo of
its candidate SKUs, for every filter; recall is high and grows with `sku_rows`; a brand whose
SKU vectors do not cover all of its photos is served by the photo cells until the backfill
repairs it; new brands and new photos are found at once."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from unde.db.pool import open_pool
from unde.retrieval.cells import ensure_cells, nearest_cells
from unde.retrieval.knn import ImageHit, KnnQuery, forget_profile, knn_images, knn_images_sync, plan_for_sync
from unde.retrieval.knn_plan import SearchPlan
from unde.retrieval.sku_cells import CANDIDATES_PER_K

from .conftest import MODEL, Catalog, K, available, brand_filters, copy_rows, exact_ids, queries
from .test_knn import assert_ranked, centroids_of, connect, near, recall

#: SKU vectors a skus plan ranks in the tests (the catalog has 500 SKUs; ~31 a cell).
SKU_ROWS = 60


def plan_of(conn: psycopg.Connection, brand_filter: list[str] | None, q: np.ndarray,
            sku_rows: int = SKU_ROWS) -> SearchPlan:
    return plan_for_sync(conn, KnnQuery(K, MODEL, brand_filter, sku_rows=sku_rows), q)


def search(conn: psycopg.Connection, q: np.ndarray, brand_filter: list[str] | None,
           sku_rows: int = SKU_ROWS) -> list[ImageHit]:
    return knn_images_sync(conn, q, k=K, model_version=MODEL, brands=brand_filter, sku_rows=sku_rows)


def exact_over_candidates(conn: psycopg.Connection, q: np.ndarray, brand_filter: list[str] | None,
                          cells: tuple[int, ...], k: int = K) -> list[int]:
    """What a skus plan probing `cells` must return: the filter's SKUs in those cells ranked by
    their vector (index scans off), the best CANDIDATES_PER_K × k, then all of their photos
    ranked exactly."""
    brands = "" if brand_filter is None else " AND brand = ANY(%(brands)s)"
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        rows = conn.execute(
            "WITH c AS (SELECT brand, sku_id FROM sku_embeddings WHERE model_version = %(mv)s "
            f"AND cell = ANY(%(cells)s){brands} ORDER BY embedding <=> %(q)s, brand, sku_id LIMIT %(m)s) "
            "SELECT p.id FROM sku_image_embeddings AS p JOIN c USING (brand, sku_id) "
            "WHERE p.model_version = %(mv)s ORDER BY p.embedding <=> %(q)s, p.id LIMIT %(k)s",
            {"mv": MODEL, "cells": list(cells), "brands": brand_filter, "q": q,
             "m": CANDIDATES_PER_K * k, "k": k}).fetchall()
    return [r[0] for r in rows]


def test_sku_vectors_are_the_mean_of_each_skus_photos_in_its_nearest_cell(loaded_url: str,
                                                                         catalog: Catalog) -> None:
    vectors, brands, skus = catalog
    with connect(loaded_url) as conn:
        rows = conn.execute("SELECT brand, sku_id, embedding, photos, cell FROM sku_embeddings "
                            "WHERE model_version = %s ORDER BY brand, sku_id", (MODEL,)).fetchall()
        centroids = centroids_of(conn)
        other = conn.execute("SELECT count(*) FROM sku_embeddings WHERE model_version <> %s", (MODEL,)).fetchone()
    assert other == (0,)  # the other model version has no cells, so no SKU vectors either
    assert len(rows) == len(set(skus.tolist())) and sum(r[3] for r in rows) == len(vectors)
    for brand, sku_id, embedding, photos, cell in rows:
        mine = vectors[skus == int(sku_id[1:])]
        assert f"b{brands[skus == int(sku_id[1:])][0]}" == brand and photos == len(mine)
        mean = mine.mean(axis=0)
        stored = embedding.to_numpy()
        assert np.allclose(stored, mean, atol=1e-5)
        assert cell == int(nearest_cells(stored.reshape(1, -1), centroids)[0])


@pytest.mark.parametrize("sku_rows", [SKU_ROWS, 200])
async def test_skus_plan_equals_exact_ranking_of_its_candidates_for_every_filter(
        loaded_url: str, pool: AsyncConnectionPool, catalog: Catalog, sku_rows: int) -> None:
    brands = catalog[1]
    with connect(loaded_url) as conn:
        forget_profile(conn)
        for brand_filter in brand_filters(brands):
            kept = available(brands, brand_filter)
            for q in queries(catalog, 3, seed=17):
                plan = plan_of(conn, brand_filter, q, sku_rows)
                hits = search(conn, q, brand_filter, sku_rows)
                assert len(hits) == min(K, kept)
                if kept <= K:
                    assert plan.exact
                    assert_ranked(hits, exact_ids(conn, q, brand_filter, K), brand_filter)
                    continue
                assert plan.kind == "skus" and plan.candidates == CANDIDATES_PER_K * K, plan
                assert_ranked(hits, exact_over_candidates(conn, q, brand_filter, plan.cells), brand_filter)
                pooled = await knn_images(pool, q, k=K, model_version=MODEL, brands=brand_filter,
                                          sku_rows=sku_rows, memory_mb=0)
                assert pooled == hits  # the async twin plans and answers alike (memory plans: test_knn_memory)


async def test_skus_plan_recall_is_high_and_grows_with_sku_rows(loaded_url: str, catalog: Catalog) -> None:
    brands = catalog[1]
    by_rows: dict[int, list[float]] = {}
    with connect(loaded_url) as conn:
        for brand_filter in brand_filters(brands):
            if available(brands, brand_filter) <= K:
                continue
            for q in queries(catalog, 6, seed=23):
                truth = exact_ids(conn, q, brand_filter, K)
                for sku_rows in (30, SKU_ROWS, 500):
                    hits = search(conn, q, brand_filter, sku_rows)
                    assert len(hits) == K  # never short
                    by_rows.setdefault(sku_rows, []).append(recall(hits, truth))
    means = {rows: float(np.mean(values)) for rows, values in by_rows.items()}
    assert means[30] <= means[SKU_ROWS] <= means[500], means
    assert means[SKU_ROWS] >= 0.9 and means[500] >= 0.99, means


async def test_a_brand_with_incomplete_sku_vectors_uses_the_photo_cells_until_backfilled(
        knn_clone_url: str, catalog: Catalog) -> None:
    q = queries(catalog, 1, seed=41)[0]
    with connect(knn_clone_url) as conn:
        assert plan_of(conn, ["b1"], q).kind == "skus"
        victim = conn.execute("DELETE FROM sku_embeddings WHERE model_version = %s AND brand = 'b1' "
                              "AND sku_id = (SELECT min(sku_id) FROM sku_embeddings WHERE brand = 'b1') "
                              "RETURNING sku_id", (MODEL,)).fetchone()
        assert victim is not None
        forget_profile(conn)
        assert plan_of(conn, ["b1"], q).kind == "cells"  # its photos would be unreachable
        assert plan_of(conn, ["b2"], q).kind == "skus"  # other brands are not affected
        assert plan_of(conn, None, q).kind == "cells"
        assert_ranked(search(conn, q, ["b1"], 10_000), exact_ids(conn, q, ["b1"], K), ["b1"])
        # A new photo of an existing SKU, written before its SKU vector is recomputed.
        sku = conn.execute("SELECT sku_id FROM sku_embeddings WHERE brand = 'b2' ORDER BY sku_id LIMIT 1").fetchone()
        assert sku is not None
        copy_rows(conn, near(q, 1, 0.01, seed=5), ["b2"], [sku[0]])
        forget_profile(conn)
        assert plan_of(conn, ["b2"], q).kind == "cells"
        new_id = conn.execute("SELECT max(id) FROM sku_image_embeddings").fetchone()
        assert new_id is not None and search(conn, q, ["b2"])[0].id == new_id[0]
    async with await psycopg.AsyncConnection.connect(knn_clone_url, autocommit=True) as aconn:
        report = await ensure_cells(aconn, MODEL)
    assert (report.trained, report.assigned, report.skus) == (0, 1, 2)  # the new photo; both SKUs
    with connect(knn_clone_url) as conn:
        for brand_filter in (["b1"], ["b2"], None):
            assert plan_of(conn, brand_filter, q).kind == "skus"
        assert search(conn, q, ["b2"])[0].id == new_id[0]
        assert conn.execute("SELECT photos FROM sku_embeddings WHERE brand = 'b2' AND sku_id = %s",
                            (sku[0],)).fetchone() == (6,)


async def test_skus_without_photos_are_deleted_by_the_backfill(knn_clone_url: str) -> None:
    with connect(knn_clone_url) as conn:
        gone = conn.execute("DELETE FROM sku_image_embeddings WHERE model_version = %s AND brand = 'b3' "
                            "AND sku_id = (SELECT min(sku_id) FROM sku_image_embeddings WHERE brand = 'b3') "
                            "RETURNING sku_id", (MODEL,)).fetchall()
        assert len(gone) == 5
    async with await psycopg.AsyncConnection.connect(knn_clone_url, autocommit=True) as aconn:
        report = await ensure_cells(aconn, MODEL)
        again = await ensure_cells(aconn, MODEL)
    assert (report.skus, again.skus) == (1, 0)  # deleted once; then nothing is stale
    with connect(knn_clone_url) as conn:
        assert conn.execute("SELECT count(*) FROM sku_embeddings WHERE sku_id = %s", (gone[0][0],)).fetchone() == (0,)


async def test_a_new_brand_is_found_by_the_skus_plan_while_counts_are_cached(
        knn_clone_url: str, catalog: Catalog) -> None:
    """Photos of a brand the cached counts do not know are ranked exactly next to the SKU stage."""
    pool = await open_pool(knn_clone_url, name="test", min_size=1, max_size=1, vector=True)
    try:
        q = queries(catalog, 1, seed=43)[0]
        mall = ["b1", "b2", "newbrand"]
        before = await knn_images(pool, q, k=K, model_version=MODEL, brands=mall, sku_rows=SKU_ROWS)
        assert len(before) == K and all(h.brand != "newbrand" for h in before)
        with connect(knn_clone_url) as conn:
            copy_rows(conn, near(q, 60, 0.3, seed=9), ["newbrand"] * 60, [f"N{i}" for i in range(60)])
            hits = await knn_images(pool, q, k=K, model_version=MODEL, brands=mall, sku_rows=SKU_ROWS)
            assert sum(h.brand == "newbrand" for h in hits) >= 40
            assert {h.id for h in hits if h.brand == "newbrand"} <= set(exact_ids(conn, q, ["newbrand"], K))
    finally:
        await pool.close()


async def test_retraining_re_places_every_sku_vector(knn_clone_url: str, catalog: Catalog) -> None:
    with connect(knn_clone_url) as conn:
        conn.execute("DELETE FROM embedding_cells WHERE model_version = %s", (MODEL,))
        conn.execute("UPDATE sku_image_embeddings SET cell = NULL WHERE model_version = %s", (MODEL,))
    async with await psycopg.AsyncConnection.connect(knn_clone_url, autocommit=True) as aconn:
        report = await ensure_cells(aconn, MODEL, min_rows=0, cells=8)
    assert (report.trained, report.skus) == (8, len(set(catalog[2].tolist())))
    with connect(knn_clone_url) as conn:
        centroids = centroids_of(conn)
        rows = conn.execute("SELECT embedding, cell FROM sku_embeddings WHERE model_version = %s", (MODEL,)).fetchall()
        means = np.stack([r[0].to_numpy() for r in rows])
        assert [r[1] for r in rows] == nearest_cells(means, centroids).tolist()
        q = queries(catalog, 1, seed=47)[0]
        plan = plan_of(conn, ["b0", "b1"], q)
        assert plan.kind == "skus" and plan.n_cells == 8 and all(0 <= c < 8 for c in plan.cells)


def test_every_statement_is_counted_by_plan_kind(loaded_url: str, catalog: Catalog) -> None:
    def count(kind: str) -> float:
        return REGISTRY.get_sample_value("unde_knn_plans_total", {"kind": kind, "attempt": "first"}) or 0.0

    q = queries(catalog, 1, seed=53)[0]
    before = {kind: count(kind) for kind in ("skus", "exact")}
    with connect(loaded_url) as conn:
        search(conn, q, ["b0", "b1"])
        search(conn, q, ["b7"], sku_rows=SKU_ROWS)
        knn_images_sync(conn, q, k=K, model_version="other-model", brands=["b0"])  # no cells: exact
    assert count("skus") - before["skus"] >= 2 and count("exact") - before["exact"] >= 1
