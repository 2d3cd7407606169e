"""The SKU stage held in the searching process (`unde.retrieval.sku_memory`) on real pgvector
0.6.2: the matrix mirrors the SKU and photo rows; a memory plan chooses the SKUs its two rules
admit (SKU means, then the held photos), loses no photo of the k best among the first rule's
SKUs, and ranks their photos exactly; a catalog change makes searches fall back to the server
until the matrix is re-read; a cap that fits only the SKU vectors holds those alone; a matrix
over its cap is never held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import numpy as np
import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from unde.db.pool import open_pool
from unde.retrieval.knn import KnnQuery, knn_images, plan_for
from unde.retrieval.knn_catalog import catalog_async, expire, refreshing
from unde.retrieval.knn_plan import SearchPlan
from unde.retrieval.sku_cells import upsert_skus
from unde.retrieval.sku_memory import (
    MARGIN_PER_SPREAD,
    MAX_PER_K,
    PHOTO_SCALE,
    CatalogMoved,
    SkuMatrix,
    Spans,
    load_matrix,
    photo_slack,
)

from .conftest import MODEL, Catalog, K, available, brand_filters, copy_rows, exact_ids, queries
from .test_knn import assert_ranked, centroids_of, connect, near, recall
from .test_knn_skus import SKU_ROWS

MB = 512.0


async def loaded_pool(url: str, memory_mb: float = MB) -> AsyncConnectionPool:
    """A pool whose first search has started the matrix read, and the read finished."""
    pool = await open_pool(url, name="memory", min_size=1, max_size=2, vector=True)
    await plan_for(pool, KnnQuery(K, MODEL, None, memory_mb=memory_mb), np.ones(512, dtype=np.float32))
    await asyncio.gather(*refreshing(pool))
    return pool


@pytest.fixture
async def mpool(loaded_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await loaded_pool(loaded_url)
    yield pool
    await pool.close()


async def matrix_of(pool: AsyncConnectionPool) -> SkuMatrix:
    async with pool.connection() as conn:
        catalog = await catalog_async(pool, conn, MODEL, MB)
    assert catalog.memory is not None and catalog.skus is not None
    assert catalog.memory.signature == catalog.skus.signature
    return catalog.memory


def photos_of(conn: psycopg.Connection, q: np.ndarray, chosen: Iterable[tuple[str, str]], k: int = K) -> list[int]:
    """Every photo of the chosen SKUs, ranked exactly (what a memory plan must return)."""
    return [row[0] for row in photo_cosines(conn, q, chosen)[:k]]


def photo_cosines(conn: psycopg.Connection, q: np.ndarray,
                  skus: Iterable[tuple[str, str]]) -> list[tuple[int, str, str, float]]:
    """(id, brand, sku_id, cosine to q) of every photo of `skus`, best first, by the server."""
    keys = sorted(skus)
    rows = conn.execute(
        "SELECT p.id, p.brand, p.sku_id, 1 - (p.embedding <=> %(q)s) FROM sku_image_embeddings AS p "
        "JOIN unnest(%(b)s::text[], %(s)s::text[]) AS c(brand, sku_id) USING (brand, sku_id) "
        "WHERE p.model_version = %(mv)s ORDER BY p.embedding <=> %(q)s, p.id",
        {"b": [b for b, _ in keys], "s": [s for _, s in keys], "mv": MODEL, "q": q}).fetchall()
    return [(i, b, s, float(c)) for i, b, s, c in rows]


def sku_bounds(conn: psycopg.Connection, q: np.ndarray, brand_filter: list[str] | None,
               cells: tuple[int, ...]) -> dict[tuple[str, str], tuple[float, float]]:
    """The filter's SKUs in `cells`: (cosine to q, cosine + MARGIN_PER_SPREAD × photo spread),
    computed by the server from the stored SKU vectors."""
    brands = "" if brand_filter is None else " AND brand = ANY(%(brands)s)"
    rows = conn.execute(f"SELECT brand, sku_id, 1 - (embedding <=> %(q)s), vector_norm(embedding) "
                        f"FROM sku_embeddings WHERE model_version = %(mv)s AND cell = ANY(%(cells)s){brands}",
                        {"q": q, "mv": MODEL, "cells": list(cells), "brands": brand_filter}).fetchall()
    return {(b, s): (float(c), float(c) + MARGIN_PER_SPREAD * float(np.sqrt(max(0.0, 1 - n * n))))
            for b, s, c, n in rows}


async def test_the_matrix_mirrors_the_sku_rows(loaded_url: str, mpool: AsyncConnectionPool) -> None:
    matrix = await matrix_of(mpool)
    with connect(loaded_url) as conn:
        rows = conn.execute("SELECT cell, brand, sku_id, photos, embedding FROM sku_embeddings "
                            "WHERE model_version = %s ORDER BY cell, brand, sku_id", (MODEL,)).fetchall()
        n_cells = len(centroids_of(conn))
    assert [(b, s) for _, b, s, _, _ in rows] == list(zip(matrix.brands, matrix.sku_ids, strict=True))
    for i, (cell, brand, _, _, embedding) in enumerate(rows):
        unit = embedding.to_numpy() / np.linalg.norm(embedding.to_numpy())
        assert np.allclose(matrix.vectors[i], unit, atol=1e-6)
        spans = matrix.by_brand[brand]
        assert [c for c, a, b in zip(spans.cells, spans.starts, spans.stops, strict=True) if a <= i < b] == [cell]
    assert matrix.n_cells == n_cells
    every = matrix.spans(None)  # the spans of all brands tile the matrix
    assert every.starts[0] == 0 and every.stops[-1] == len(rows) and (every.starts[1:] == every.stops[:-1]).all()
    totals: dict[str, int] = {}
    for _, brand, _, photos, _ in rows:
        totals[brand] = totals.get(brand, 0) + photos
    assert matrix.photos == totals
    assert REGISTRY.get_sample_value("unde_knn_memory_skus", {"model_version": MODEL}) == len(rows)
    # every SKU row's photos, as held unit vectors
    assert matrix.photo_vectors is not None and matrix.photo_starts is not None
    assert matrix.photo_vectors.dtype == np.int16 and len(matrix.photo_vectors) == sum(totals.values())
    with connect(loaded_url) as conn:
        photos = conn.execute("SELECT brand, sku_id, embedding FROM sku_image_embeddings WHERE model_version = %s",
                              (MODEL,)).fetchall()
    by_sku: dict[tuple[str, str], list[np.ndarray]] = {}
    for brand, sku_id, embedding in photos:
        by_sku.setdefault((brand, sku_id), []).append(embedding.to_numpy() / np.linalg.norm(embedding.to_numpy()))
    for i, (_, brand, sku_id, count, _) in enumerate(rows):
        held = matrix.photo_vectors[matrix.photo_starts[i]:matrix.photo_starts[i + 1]] / PHOTO_SCALE
        stored = np.stack(by_sku[(brand, sku_id)])
        assert len(held) == len(stored) == count
        assert np.allclose(held[np.lexsort(held.T)], stored[np.lexsort(stored.T)], atol=0.5 / PHOTO_SCALE + 1e-7)
    assert REGISTRY.get_sample_value("unde_knn_memory_photos", {"model_version": MODEL}) == len(photos)


@pytest.mark.parametrize("k", [10, K])  # 10: the cap (40) binds among the ≥ 60 SKUs probed
async def test_memory_plans_choose_the_skus_the_rules_admit_and_rank_their_photos_exactly(
        loaded_url: str, mpool: AsyncConnectionPool, catalog: Catalog, k: int) -> None:
    brands = catalog[1]
    matrix = await matrix_of(mpool)
    firsts = chosen = 0
    with connect(loaded_url) as conn:
        for brand_filter in brand_filters(brands):
            if available(brands, brand_filter) <= k:
                continue
            for q in queries(catalog, 3, seed=61):
                plan = await plan_for(mpool, KnnQuery(k, MODEL, brand_filter, sku_rows=SKU_ROWS), q)
                assert plan.kind == "memory" and 0 < len(plan.chosen) <= MAX_PER_K * k, plan
                assert plan.candidates == len(plan.chosen)
                # rule 1, against the server's SKU vectors: the SKUs whose bound reaches the (k/3)-th
                # best cosine, best bounds first up to the cap (float near-ties at either cut may fall
                # either way)
                rows = matrix.by_means(q / np.linalg.norm(q), plan.cells, brand_filter, k)
                first = set(zip(matrix.brands[rows].tolist(), matrix.sku_ids[rows].tolist(), strict=True))
                skus = sku_bounds(conn, q, brand_filter, plan.cells)
                cosines = sorted((c for c, _ in skus.values()), reverse=True)
                reference = cosines[min(len(cosines), max(1, k // 3)) - 1]
                eligible = sorted(((bound, key) for key, (_, bound) in skus.items() if bound >= reference - 1e-5),
                                  reverse=True)
                floor = eligible[min(len(eligible), MAX_PER_K * k) - 1][0]
                assert all(skus[key][1] >= max(reference, floor) - 1e-5 for key in first)
                missed = [key for bound, key in eligible if bound > floor + 1e-5 and bound >= reference + 1e-5]
                assert set(missed) <= first
                # rule 2, against the server's photo cosines: every SKU owning one of the k best photos
                # of rule 1's SKUs is kept, and no SKU whose best photo is further than the slack
                ranked = photo_cosines(conn, q, first)
                kth = ranked[k - 1][3] if len(ranked) > k else -1.0
                best: dict[tuple[str, str], float] = {}
                for _, brand, sku_id, cosine in ranked:
                    best.setdefault((brand, sku_id), cosine)
                assert {key for key, cosine in best.items() if cosine >= kth} <= set(plan.chosen) <= first
                unit = q / np.linalg.norm(q)  # a held cosine is within half the slack of the true one
                assert all(best[key] >= kth - 2 * photo_slack(unit) for key in plan.chosen)
                firsts, chosen = firsts + len(first), chosen + len(plan.chosen)
                # so the result is the k best photos of rule 1's SKUs, ranked by the server
                hits = await knn_images(mpool, q, k=k, model_version=MODEL, brands=brand_filter,
                                        sku_rows=SKU_ROWS, memory_mb=MB)
                assert_ranked(hits, photos_of(conn, q, plan.chosen, k), brand_filter)
                assert_ranked(hits, photos_of(conn, q, first, k), brand_filter)
                server = await knn_images(mpool, q, k=k, model_version=MODEL, brands=brand_filter,
                                          sku_rows=SKU_ROWS, memory_mb=0)
                truth = exact_ids(conn, q, brand_filter, k)
                assert recall(hits, truth) >= recall(server, truth) - 0.02
    assert chosen < 0.8 * firsts  # the photos rule leaves the server fewer SKUs


async def test_a_catalog_change_falls_back_to_the_server_until_the_matrix_is_re_read(
        knn_clone_url: str, catalog: Catalog) -> None:
    pool = await loaded_pool(knn_clone_url)
    try:
        q = queries(catalog, 1, seed=67)[0]
        query = KnnQuery(K, MODEL, ["b2", "b5"], sku_rows=SKU_ROWS, memory_mb=MB)
        assert (await plan_for(pool, query, q)).kind == "memory"
        with connect(knn_clone_url) as conn:  # a new SKU of b2, right next to the query
            copy_rows(conn, near(q, 5, 0.01, seed=3), ["b2"] * 5, ["NEW"] * 5)
        async with pool.connection() as aconn:
            await upsert_skus(aconn, MODEL, [("b2", "NEW")], centroids_of(connect(knn_clone_url)))
        expire(pool, MODEL)  # what the count refresh does after COUNTS_TTL_S
        plan = await plan_for(pool, query, q)  # the counts moved on; the matrix has not
        assert plan.kind == "skus"
        hits = await knn_images(pool, q, k=K, model_version=MODEL, brands=["b2", "b5"], sku_rows=SKU_ROWS)
        assert {h.sku_id for h in hits[:5]} == {"NEW"}
        await asyncio.gather(*refreshing(pool))  # the re-read the new counts started
        plan = await plan_for(pool, query, q)
        assert plan.kind == "memory" and ("b2", "NEW") in plan.chosen
        again = await knn_images(pool, q, k=K, model_version=MODEL, brands=["b2", "b5"], sku_rows=SKU_ROWS)
        assert [h.id for h in again] == [h.id for h in hits]
    finally:
        await pool.close()


async def test_vanished_skus_re_plan_from_fresh_counts(knn_clone_url: str, catalog: Catalog) -> None:
    """Every chosen SKU deleted after the matrix was read: the short result re-reads the counts
    and the server-side stage answers in full."""
    pool = await loaded_pool(knn_clone_url)
    try:
        q = queries(catalog, 1, seed=71)[0]
        k, mall = 10, ["b0", "b1"]
        plan = await plan_for(pool, KnnQuery(k, MODEL, mall, sku_rows=SKU_ROWS, memory_mb=MB), q)
        assert plan.kind == "memory" and len(plan.chosen) >= k // 3
        def retries(kind: str) -> float:
            return REGISTRY.get_sample_value("unde_knn_plans_total", {"kind": kind, "attempt": "retry"}) or 0.0

        before = retries("cells")
        with connect(knn_clone_url) as conn:
            conn.execute("DELETE FROM sku_image_embeddings AS p USING unnest(%s::text[], %s::text[]) AS c(b, s) "
                         "WHERE p.brand = c.b AND p.sku_id = c.s",
                         ([b for b, _ in plan.chosen], [s for _, s in plan.chosen]))
        hits = await knn_images(pool, q, k=k, model_version=MODEL, brands=mall, sku_rows=SKU_ROWS)
        assert len(hits) == k  # never short
        assert {h.brand for h in hits} <= set(mall) and not {(h.brand, h.sku_id) for h in hits} & set(plan.chosen)
        assert retries("cells") == before + 1  # the orphaned SKU rows no longer cover b0 and b1
    finally:
        await asyncio.gather(*refreshing(pool), return_exceptions=True)
        await pool.close()


async def test_a_cap_that_fits_only_the_sku_vectors_holds_those_alone(loaded_url: str, catalog: Catalog) -> None:
    mb = 2.0  # 500 SKUs × 512 × 4 B ≈ 0.98 MB; with 2,500 photos × 512 × 2 B ≈ 3.4 MB
    pool = await loaded_pool(loaded_url, memory_mb=mb)
    try:
        async with pool.connection() as conn:
            matrix = (await catalog_async(pool, conn, MODEL, mb)).memory
        assert matrix is not None and matrix.photo_vectors is None and len(matrix.vectors) == 500
        assert REGISTRY.get_sample_value("unde_knn_memory_photos", {"model_version": MODEL}) == 0
        for q in queries(catalog, 3, seed=79):
            plan = await plan_for(pool, KnnQuery(K, MODEL, None, sku_rows=SKU_ROWS, memory_mb=mb), q)
            rows = matrix.by_means(q / np.linalg.norm(q), plan.cells, None, K)
            assert plan.kind == "memory" and set(plan.chosen) == set(
                zip(matrix.brands[rows].tolist(), matrix.sku_ids[rows].tolist(), strict=True))
            hits = await knn_images(pool, q, k=K, model_version=MODEL, brands=None, sku_rows=SKU_ROWS, memory_mb=mb)
            with connect(loaded_url) as sync:
                assert_ranked(hits, photos_of(sync, q, plan.chosen), None)
    finally:
        await pool.close()


async def test_a_read_stops_when_the_catalog_outgrew_the_counts_it_was_started_for(loaded_url: str) -> None:
    """The arrays are allocated for the counts (so a re-read needs one matrix more, not two);
    more rows than that mean the catalog moved on, and the next count refresh reads again."""
    pool = await open_pool(loaded_url, name="read", min_size=1, max_size=1, vector=True)
    try:
        with connect(loaded_url) as sync:
            n_cells = len(centroids_of(sync))
        async with pool.connection() as conn:
            for skus, photos in ((499, 2500), (500, 2499)):
                with pytest.raises(CatalogMoved):
                    await load_matrix(conn, MODEL, n_cells, 512, 0, skus, photos)
            matrix = await load_matrix(conn, MODEL, n_cells, 512, 0, 500, 2500)
            assert len(matrix.vectors) == 500 and matrix.photo_vectors is not None
            assert matrix.photo_vectors.shape == (2500, 512) and matrix.photo_starts is not None
            assert matrix.photo_starts[-1] == 2500
            lean = await load_matrix(conn, MODEL, n_cells, 512, 0, 600, 0, keep_photos=False)
            assert len(lean.vectors) == 500 and lean.photo_vectors is None  # fewer rows: trimmed
            assert np.array_equal(lean.vectors, matrix.vectors) and lean.photos == matrix.photos
    finally:
        await pool.close()


async def test_a_matrix_over_its_cap_is_never_held(loaded_url: str, catalog: Catalog) -> None:
    pool = await loaded_pool(loaded_url, memory_mb=0.5)  # 500 SKUs × 512 × 4 B ≈ 0.98 MB
    try:
        q = queries(catalog, 1, seed=73)[0]
        assert (await plan_for(pool, KnnQuery(K, MODEL, None, memory_mb=0.5), q)).kind == "skus"
        assert (await plan_for(pool, KnnQuery(K, MODEL, None, memory_mb=0), q)).kind == "skus"
    finally:
        await pool.close()


def test_candidates_are_the_skus_whose_bound_reaches_the_reference() -> None:
    vectors = np.eye(4, dtype=np.float32)  # rows: cell 0 (a, b), cell 1 (a), cell 2 (b)

    def spans(cells: list[int], starts: list[int]) -> Spans:
        return Spans(np.array(cells), np.array(starts), np.array(starts) + 1)

    def matrix(spread: list[float]) -> SkuMatrix:
        return SkuMatrix(vectors, np.array(["a", "b", "a", "b"], dtype=object),
                         np.array(["s0", "s1", "s2", "s3"], dtype=object),
                         {"a": spans([0, 1], [0, 2]), "b": spans([0, 2], [1, 3])},
                         np.array(spread, dtype=np.float32), {"a": 2, "b": 2}, n_cells=3)

    q = np.array([0.1, 0.4, 0.3, 0.2], dtype=np.float32) * 7  # any length: cosines
    tight = matrix([0.0] * 4)
    # k = 3: the reference is the best SKU's cosine; tight photos: only it can hold the top photos
    assert tight.candidates(q, (0, 1, 2), None, 3) == (("b", "s1"),)
    assert set(tight.candidates(q, (0, 1, 2), ["a"], 3)) == {("a", "s2")}
    assert tight.candidates(q, (2,), ["a"], 3) == ()
    # k = 6: the reference is the 2nd best cosine (0.3 / |q|)
    assert set(tight.candidates(q, (0, 1, 2), None, 6)) == {("b", "s1"), ("a", "s2")}
    # spread photos: s3 (cosine 0.2/|q|) may hold a photo above s1's cosine; the cap keeps the best bound
    loose = matrix([0.0, 0.0, 0.0, 5.0])  # 0.365 + 0.08 × 5 ≥ 0.730
    assert set(loose.candidates(q, (0, 1, 2), None, 3)) == {("b", "s1"), ("b", "s3")}
    assert loose.candidates(q, (2,), ["b", "nobody"], 1) == (("b", "s3"),)  # rows 2–3 merge, one brand
    assert tight.complete(["a"], {"a": 2}) and not tight.complete(["a", "b"], {"a": 2, "b": 3})


def test_the_photo_step_keeps_the_skus_owning_the_k_best_photos_within_the_slack() -> None:
    q = np.array([0.9, 0.0, 0.5, 0.4], dtype=np.float32)
    q /= np.linalg.norm(q)
    eye = np.eye(4, dtype=np.float32)

    def close_to_kth(below: float) -> np.ndarray:  # a unit photo whose cosine is q[2] − below
        a = float(q[2]) - below
        return a * q + np.sqrt(1 - a * a) * eye[1]  # eye[1] ⟂ q

    def matrix(photos: list[list[np.ndarray]], spread: float = 0.0) -> SkuMatrix:
        counts = [len(p) for p in photos]
        held = np.rint(np.stack([v for p in photos for v in p]) * PHOTO_SCALE).astype(np.int16)
        return SkuMatrix(eye[:3], np.array(["a"] * 3, dtype=object), np.array(["s0", "s1", "s2"], dtype=object),
                         {"a": Spans(np.array([0]), np.array([0]), np.array([3]))},
                         np.full(3, spread, dtype=np.float32), {"a": sum(counts)}, n_cells=1, photo_vectors=held,
                         photo_starts=np.concatenate(([0], np.cumsum(counts))))

    rows = np.arange(3)
    plain = matrix([[eye[0], eye[1]], [eye[2]], [eye[3]]])  # photo cosines: s0 .81 and 0, s1 .45, s2 .36
    assert plain.by_photos(q, rows, 2).tolist() == [0, 1]  # the 2nd best photo is s1's
    assert plain.by_photos(q, rows, 3).tolist() == [0, 1, 2]
    assert plain.by_photos(q, rows[1:], 2).tolist() == [1, 2]  # no more photos than k: all kept
    assert plain.by_photos(q, rows, 1).tolist() == [0]
    near = matrix([[eye[0]], [eye[2]], [eye[3], close_to_kth(photo_slack(q) / 2)]])
    assert near.by_photos(q, rows, 2).tolist() == [0, 1, 2]  # within the slack of the 2nd best
    far = matrix([[eye[0]], [eye[2]], [eye[3], close_to_kth(5 * photo_slack(q))]], spread=20.0)
    assert far.by_photos(q, rows, 2).tolist() == [0, 1]
    # candidates: the means rule (every SKU: their spread is wide), then the photos rule
    assert set(far.candidates(7 * q, (0,), ["a"], 2)) == {("a", "s0"), ("a", "s1")}


def test_memory_plans_name_the_chosen_skus_as_parameters() -> None:
    from unde.retrieval.knn import plan_statement

    plan = SearchPlan("memory", limit=K, cells=(0,), n_cells=4, candidates=150, chosen=(("b", "s"),))
    statement, params = plan_statement(plan, MODEL, np.ones(8, dtype=np.float32), ["b"])
    assert "unnest(%(sku_brands)b::text[], %(sku_ids)b::text[])" in statement
    assert "sku_embeddings AS s" not in statement  # the server ranks no SKU vector
    assert (params["sku_brands"], params["sku_ids"]) == (["b"], ["s"])
