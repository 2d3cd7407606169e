"""Filtered top-k on a real pgvector 0.6 HNSW index equals the exact filtered top-k."""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Iterator

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from unde.db.embedded import with_database
from unde.db.pool import open_pool
from unde.errors import BadInput
from unde.retrieval.knn import (
    ImageHit,
    SearchPlan,
    accept,
    best_per_sku,
    escalate,
    knn_images,
    knn_images_sync,
    plan_search,
    search_sql,
    settings_sql,
)

MODEL = "test-model-v1"
N_SKUS, PHOTOS, N_BRANDS, DIM = 600, 5, 8, 512
K = 50


def _units(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_catalog(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cone + 24 styles (each brand uses 5) + SKU groups of 5 photos; Zipf-sized brands."""
    rng = np.random.default_rng(seed)
    cone, styles = _units(rng, 1)[0], _units(rng, 24)
    sizes = 1.0 / np.arange(1, N_BRANDS + 1)
    sku_brand = rng.choice(N_BRANDS, N_SKUS, p=sizes / sizes.sum())
    brand_styles = np.stack([rng.choice(24, 5, replace=False) for _ in range(N_BRANDS)])
    sku_style = brand_styles[sku_brand, rng.integers(0, 5, N_SKUS)]
    sku_vec = 0.67 * cone + 0.5 * styles[sku_style] + 0.45 * _units(rng, N_SKUS)
    rows = np.repeat(np.arange(N_SKUS), PHOTOS)
    vectors = sku_vec[rows] + 0.3 * _units(rng, len(rows))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), sku_brand[rows], rows


@pytest.fixture(scope="module")
def catalog() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return clustered_catalog()


@pytest.fixture(scope="module")
def loaded_url(pg_admin_url: str, _templates: dict[str, str],
               catalog: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Iterator[str]:
    """One production database for the module, loaded once (HNSW inserts are the slow part)."""
    name = "knn_module"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(_templates["production"])))
    url = with_database(pg_admin_url, name)
    vectors, brands, skus = catalog
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        with conn.cursor().copy("COPY sku_image_embeddings (sku_id, brand, image_url, image_rank, "
                                "image_hash, embedding, model_version, metadata) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["text", "text", "text", "int2", "text", "vector", "text", "jsonb"])
            for i in range(len(vectors)):
                cp.write_row((f"S{skus[i]}", f"b{brands[i]}", f"https://cdn/{i}.jpg", i % PHOTOS,
                              f"h{i}", vectors[i], MODEL, Jsonb({"name": "x"})))
        # Rows of another model version must never leak into results.
        conn.execute("INSERT INTO sku_image_embeddings (sku_id, brand, image_url, image_rank, image_hash,"
                     " embedding, model_version) SELECT sku_id, brand, image_url, image_rank, image_hash,"
                     " embedding, 'other-model' FROM sku_image_embeddings LIMIT 500")
        conn.execute("VACUUM ANALYZE sku_image_embeddings")
    yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def pool(loaded_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(loaded_url, name="test", min_size=1, max_size=2, vector=True)
    yield pool
    await pool.close()


def brand_filters(brands: np.ndarray) -> list[list[str] | None]:
    counts = np.bincount(brands, minlength=N_BRANDS)
    order = [f"b{b}" for b in np.argsort(counts)]
    return [[order[0]], [order[-1]], order[:2], order[:4], order[-4:], order, None]


def exact_ids(conn: psycopg.Connection, q: np.ndarray, brands: list[str] | None, k: int) -> list[int]:
    """Exact filtered top-k from PostgreSQL with index scans disabled."""
    where = "model_version = %s" + ("" if brands is None else " AND brand = ANY(%s)")
    params: list[object] = [MODEL] + ([] if brands is None else [brands])
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        rows = conn.execute(f"SELECT id FROM sku_image_embeddings WHERE {where} "
                            "ORDER BY embedding <=> %s LIMIT %s", [*params, q, k]).fetchall()
    return [r[0] for r in rows]


def queries(catalog: tuple[np.ndarray, np.ndarray, np.ndarray], n: int) -> np.ndarray:
    vectors = catalog[0]
    rng = np.random.default_rng(9)
    picks = vectors[rng.integers(0, len(vectors), n)] + 0.5 * _units(rng, n)
    return picks / np.linalg.norm(picks, axis=1, keepdims=True)


def _available(brands: np.ndarray, brand_filter: list[str] | None) -> int:
    if brand_filter is None:
        return len(brands)
    return int(np.isin(brands, [int(b[1:]) for b in brand_filter]).sum())


async def test_default_plan_equals_exact_search_for_every_selectivity(
        loaded_url: str, pool: AsyncConnectionPool,
        catalog: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, brands, _ = catalog
    with psycopg.connect(loaded_url, autocommit=True) as conn:
        register_vector(conn)
        for brand_filter in brand_filters(brands):
            for q in queries(catalog, 6):
                hits = await knn_images(pool, q, k=K, model_version=MODEL, brands=brand_filter,
                                        ef_search=40)
                truth = exact_ids(conn, q, brand_filter, K)
                assert len(hits) == min(K, _available(brands, brand_filter)) == len(truth)
                assert [h.id for h in hits] == truth, brand_filter
                assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
                if brand_filter is not None:
                    assert {h.brand for h in hits} <= set(brand_filter)


async def test_hnsw_path_returns_full_results_with_high_recall(
        loaded_url: str, pool: AsyncConnectionPool,
        catalog: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Forced onto HNSW (exact_max_rows=0) from ef_search 40: never short, recall ≥ 0.95."""
    _, brands, _ = catalog
    recalls = []
    with psycopg.connect(loaded_url, autocommit=True) as conn:
        register_vector(conn)
        for brand_filter in brand_filters(brands):
            for q in queries(catalog, 6):
                hits = await knn_images(pool, q, k=K, model_version=MODEL, brands=brand_filter,
                                        ef_search=40, exact_max_rows=0)
                truth = exact_ids(conn, q, brand_filter, K)
                assert len(hits) == min(K, _available(brands, brand_filter)) == len(truth)
                assert len({h.id for h in hits}) == len(hits)
                recalls.append(len({h.id for h in hits} & set(truth)) / len(truth))
    assert min(recalls) >= 0.9 and float(np.mean(recalls)) >= 0.95, recalls


async def test_naive_filtered_hnsw_query_returns_too_few_rows(
        loaded_url: str, catalog: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
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
                assert len(hits) == min(K, _available(brands, brand_filter))
    assert shortest < K


async def test_scores_are_cosine_similarity(loaded_url: str, pool: AsyncConnectionPool,
                                            catalog: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    vectors = catalog[0]
    q = queries(catalog, 1)[0]
    hits = await knn_images(pool, q, k=5, model_version=MODEL, brands=None)
    for hit in hits:
        assert math.isclose(hit.score, float(vectors[hit.id - 1] @ q), abs_tol=1e-5)
    assert hits[0].metadata == {"name": "x"}


async def test_empty_and_unknown_brand_filters(pool: AsyncConnectionPool) -> None:
    q = np.ones(DIM, dtype=np.float32)
    assert await knn_images(pool, q, k=5, model_version=MODEL, brands=[]) == []
    assert await knn_images(pool, q, k=5, model_version=MODEL, brands=["nobody"]) == []
    assert await knn_images(pool, q, k=5, model_version="never-indexed", brands=None) == []


async def test_bad_vectors_and_k_are_rejected(pool: AsyncConnectionPool) -> None:
    with pytest.raises(BadInput):
        await knn_images(pool, [float("nan")] * DIM, k=5, model_version=MODEL, brands=None)
    with pytest.raises(BadInput):
        await knn_images(pool, [], k=5, model_version=MODEL, brands=None)
    with pytest.raises(BadInput):
        await knn_images(pool, [1.0] * DIM, k=0, model_version=MODEL, brands=None)


def test_plan_choice() -> None:
    assert plan_search(50, 3000, 235_000, 200, iterative=False).exact
    assert plan_search(50, 3000, 235_000, 200, iterative=False, exact_max_rows=0) == SearchPlan(
        ef=1000, limit=100)
    # Half the rows kept: HNSW with ef enough to over-fetch 8× what the filter lets through,
    # asking for 2k filtered rows.
    assert plan_search(50, 117_500, 235_000, 40, iterative=False) == SearchPlan(ef=800, limit=100)
    # Few rows kept: the exact scan is both right and cheaper.
    assert plan_search(50, 11_750, 235_000, 40, iterative=False).exact
    # 8% kept would need ef 1875: capped at pgvector's 1000 (escalation then goes exact).
    assert plan_search(50, 18_800, 235_000, 40, iterative=False) == SearchPlan(ef=1000, limit=100)
    assert plan_search(50, 20_000, 235_000, 40, iterative=True) == SearchPlan(ef=50, iterative=True,
                                                                              limit=50)
    assert escalate(SearchPlan(ef=200, limit=100), 50) == SearchPlan(ef=800, limit=100)
    assert escalate(SearchPlan(ef=800, limit=100), 50) == SearchPlan(ef=1000, limit=100)
    assert escalate(SearchPlan(ef=1000, limit=100), 50).exact
    assert escalate(SearchPlan(ef=50, iterative=True, limit=50), 50).exact
    # Fewer than 2k survivors below the ef cap → not trusted; at the cap k rows suffice.
    assert not accept(SearchPlan(ef=300, limit=100), 70, 50)
    assert accept(SearchPlan(ef=1000, limit=100), 70, 50)
    assert not accept(SearchPlan(ef=1000, limit=100), 49, 50)
    assert accept(SearchPlan(ef=None, limit=50), 3, 50)


def test_sql_shapes() -> None:
    exact = search_sql(SearchPlan(ef=None), filtered=True)
    assert "(embedding <=> %(q)s) + 0" in exact and "brand = ANY" in exact
    assert settings_sql(SearchPlan(ef=None)) == []
    iterative = SearchPlan(ef=100, iterative=True)
    assert "MATERIALIZED" in search_sql(iterative, filtered=False)
    assert ("hnsw.iterative_scan", "relaxed_order") in settings_sql(iterative)


def test_best_per_sku_keeps_the_best_photo_per_sku() -> None:
    def hit(i: int, sku: str, score: float, brand: str = "b") -> ImageHit:
        return ImageHit(i, brand, sku, f"u{i}", i, score, {"n": i})

    skus = best_per_sku([hit(1, "A", 0.9), hit(2, "B", 0.95), hit(3, "A", 0.97),
                         hit(4, "A", 0.5, brand="c")])
    assert [(s.brand, s.sku_id, s.score) for s in skus] == [("b", "A", 0.97), ("b", "B", 0.95),
                                                              ("c", "A", 0.5)]
    assert skus[0].best_image_url == "u3" and [h.id for h in skus[0].hits] == [3, 1]
