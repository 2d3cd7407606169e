"""`unde.retrieval.search` on real PostgreSQL 18 + pgvector 0.8, against the exact answer.

The exact answer is computed in numpy over the same vectors: every SKU's best photo, the k
best SKUs. Both paths are exercised: the exact path (filters of few SKUs, the default here:
the test catalog is small) and the IVFFlat path (`exact_rows` forced low).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.retrieval.conftest import MODEL, OTHER, Catalog, K, brand_filters, queries
from unde.db.pgvector import installed_version, version_problem
from unde.errors import BadInput
from unde.retrieval.search import SearchTuning, search

EXACT = SearchTuning()
INDEX = SearchTuning(probes=10, candidates=120, exact_rows=0)  # every filter through the IVFFlat index


async def _search(pool: AsyncConnectionPool, q: np.ndarray, brands: list[str] | None,
                  tuning: SearchTuning, k: int = K, model: str = MODEL) -> list[tuple[str, str, float]]:
    hits = await search(pool, q, model_version=model, k=k, brands=brands, tuning=tuning)
    return [(h.brand, h.sku_id, h.score) for h in hits]


async def test_exact_path_is_the_exact_answer(pool: AsyncConnectionPool, catalog: Catalog) -> None:
    for brands in brand_filters():
        for q in queries(catalog, 4, seed=3):
            got = await _search(pool, q, brands, EXACT)
            truth = catalog.truth(q, brands, K)
            # SKU means choose the candidates (at least 2k of them): the answer is the exact
            # one wherever the filter has few SKUs, and otherwise near it.
            assert len(got) == len(truth) == min(K, catalog.brand_skus(brands))
            if catalog.brand_skus(brands) <= EXACT.candidates_for(K):
                assert [(b, s) for b, s, _ in got] == [(b, s) for b, s, _ in truth]
            assert np.allclose([x for *_, x in got], sorted((x for *_, x in got), reverse=True))


async def test_index_path_is_never_short_and_finds_the_true_skus(pool: AsyncConnectionPool,
                                                                 catalog: Catalog) -> None:
    recalls = []
    for brands in brand_filters():
        for q in queries(catalog, 6, seed=5):
            got = await _search(pool, q, brands, INDEX)
            truth = catalog.truth(q, brands, K)
            assert len(got) == min(K, catalog.brand_skus(brands)), brands
            assert len({(b, s) for b, s, _ in got}) == len(got)  # distinct SKUs
            assert brands is None or all(b in brands for b, _, _ in got)
            recalls.append(len({(b, s) for b, s, _ in got} & {(b, s) for b, s, _ in truth}) / len(truth))
    # 10 of 24 lists on a 680-SKU toy catalog (measured: mean 0.975, worst 0.76); the production
    # shape's recall is the bench's figure (bench/pgvector.py).
    assert np.mean(recalls) >= 0.95 and min(recalls) >= 0.7, recalls


async def test_each_sku_scores_its_best_photo(pool: AsyncConnectionPool, catalog: Catalog) -> None:
    q = queries(catalog, 1, seed=7)[0]
    hits = await search(pool, q, model_version=MODEL, k=K, brands=None, tuning=INDEX)
    scores = catalog.vectors @ q
    for hit in hits:
        rows = [i for i, (b, s) in enumerate(zip(catalog.brands, catalog.skus, strict=True))
                if (b, s) == (hit.brand, hit.sku_id)]
        best = max(rows, key=lambda i: scores[i])
        assert hit.score == pytest.approx(float(scores[best]), abs=1e-5)
        assert hit.image_url.endswith(f"/{best}.jpg")
        assert hit.metadata == {"name": f"{hit.brand} {hit.sku_id}"}


@pytest.mark.parametrize("tuning", [EXACT, INDEX], ids=["exact", "index"])
async def test_a_catalog_photo_finds_its_own_sku_first(pool: AsyncConnectionPool, catalog: Catalog,
                                                       tuning: SearchTuning) -> None:
    rng = np.random.default_rng(2)
    for row in rng.integers(0, len(catalog.vectors), 12):
        brand, sku = catalog.brands[row], catalog.skus[row]
        for brands in ([brand], None):
            hits = await _search(pool, catalog.vectors[row], brands, tuning, k=10)
            assert hits[0][:2] == (brand, sku)
            assert hits[0][2] == pytest.approx(1.0, abs=1e-5)


async def test_single_photo_skus_are_served_in_full(pool: AsyncConnectionPool, catalog: Catalog) -> None:
    for tuning in (EXACT, INDEX):
        for q in queries(catalog, 3, seed=11):
            got = await _search(pool, q, ["solo"], tuning)
            assert len(got) == K
            assert {(b, s) for b, s, _ in got} == {(b, s) for b, s, _ in catalog.truth(q, ["solo"], K)}


async def test_model_versions_never_leak(pool: AsyncConnectionPool, catalog: Catalog) -> None:
    """OTHER holds copies of MODEL's first 500 photos: each version answers with its own rows."""
    other_skus = set(catalog.skus[:500])
    for tuning in (EXACT, INDEX):
        for q in queries(catalog, 3, seed=13):
            other = await _search(pool, q, None, tuning, model=OTHER)
            assert other and {s for _, s, _ in other} <= other_skus
            assert len(other) == min(K, len(other_skus))


async def test_empty_and_unknown_filters_answer_nothing(pool: AsyncConnectionPool, catalog: Catalog) -> None:
    q = queries(catalog, 1)[0]
    assert await _search(pool, q, [], INDEX) == []
    assert await _search(pool, q, ["no-such-brand"], INDEX) == []
    assert await _search(pool, q, None, INDEX, model="no-such-model") == []
    with pytest.raises(BadInput):
        await _search(pool, q, None, INDEX, k=0)


async def test_query_settings_never_stay_on_a_pooled_connection(loaded_url: str, catalog: Catalog) -> None:
    from unde.db.pool import open_pool

    pool = await open_pool(loaded_url, name="one", min_size=1, max_size=1, vector=True)
    try:
        for tuning in (EXACT, INDEX):
            await _search(pool, queries(catalog, 1)[0], ["b0"], tuning)
            async with pool.connection() as conn:
                shown = [(await (await conn.execute(f"SHOW {name}")).fetchone() or ("",))[0]
                         for name in ("ivfflat.probes", "ivfflat.iterative_scan", "enable_indexscan",
                                      "enable_seqscan", "enable_bitmapscan")]
            assert shown == ["1", "off", "on", "on", "on"]
    finally:
        await pool.close()


async def test_twenty_concurrent_searches_share_a_pool_of_four(loaded_url: str, catalog: Catalog) -> None:
    """One connection per search: 20 at once on 4 connections all finish, none times out."""
    from unde.db.pool import open_pool

    pool = await open_pool(loaded_url, name="four", min_size=0, max_size=4, vector=True)
    try:
        qs = queries(catalog, 20, seed=17)
        filters = brand_filters()
        answers = await asyncio.gather(*[
            search(pool, q, model_version=MODEL, k=K, brands=filters[i % len(filters)],
                   tuning=INDEX if i % 2 else EXACT, timeout_s=30)
            for i, q in enumerate(qs)])
        assert all(len(a) == min(K, catalog.brand_skus(filters[i % len(filters)]))
                   for i, a in enumerate(answers))
        assert pool.get_stats().get("requests_errors", 0) == 0
    finally:
        await pool.close()


async def test_the_installed_pgvector_serves_and_older_ones_are_named(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        found = await installed_version(conn)
    assert found is not None and version_problem(found) is None
    for old in ("0.6.2", "0.7.4", None):
        problem = version_problem(old)
        assert problem is not None and (old or "not installed") in problem
        assert "ALTER EXTENSION vector UPDATE" in problem


def test_the_start_up_check_refuses_an_old_pgvector(loaded_url: str) -> None:
    from unde.db import pgvector
    from unde.errors import ConfigError

    pgvector.check_at_start(loaded_url)  # 0.8: starts
    pgvector.check_at_start("host=/nonexistent dbname=x", timeout_s=1)  # unreachable: warns only
    assert pgvector.installed_version_sync(loaded_url, 5) == "0.8.6"
    with pytest.raises(ConfigError, match=r"pgvector 0\.6\.2.*ALTER EXTENSION vector UPDATE"):
        pgvector.check_at_start(loaded_url, read=lambda url, timeout_s: "0.6.2")
