"""A clustered catalog loaded once into a production database, its model version split into
IVF cells (`unde.retrieval.cells`).

Tests that change the database (add rows or a brand, delete rows, retrain) work on a clone of
it (`knn_clone_url`), made from the loaded database as a template in milliseconds.
"""

from __future__ import annotations

import asyncio
import itertools
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
from unde.retrieval.cells import CellReport, ensure_cells
from unde.retrieval.knn_catalog import refreshing

MODEL = "test-model-v1"
N_SKUS, PHOTOS, N_BRANDS, DIM = 500, 5, 8, 512
K = 50
#: Cells of the test catalog (2,500 rows: ~156 rows a cell), trained once for MODEL only.
CELLS = 16
#: Rows a cells plan scans in the tests: small enough that every filter of more than a few
#: hundred rows (the large brands, malls of several brands, no filter) takes the cells plan.
CELL_ROWS = 300
Catalog = tuple[np.ndarray, np.ndarray, np.ndarray]
_clones = itertools.count()


def units(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_catalog(seed: int = 1) -> Catalog:
    """Cone + 24 styles (each brand uses 5) + SKU groups of 5 photos; Zipf-sized brands.

    Brand b{i} has ~1/(i+1) of the SKUs: b0 ~900 photos … b7 ~120.
    """
    rng = np.random.default_rng(seed)
    cone, styles = units(rng, 1)[0], units(rng, 24)
    sizes = 1.0 / np.arange(1, N_BRANDS + 1)
    sku_brand = rng.choice(N_BRANDS, N_SKUS, p=sizes / sizes.sum())
    brand_styles = np.stack([rng.choice(24, 5, replace=False) for _ in range(N_BRANDS)])
    sku_style = brand_styles[sku_brand, rng.integers(0, 5, N_SKUS)]
    sku_vec = 0.67 * cone + 0.5 * styles[sku_style] + 0.45 * units(rng, N_SKUS)
    rows = np.repeat(np.arange(N_SKUS), PHOTOS)
    vectors = sku_vec[rows] + 0.3 * units(rng, len(rows))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), sku_brand[rows], rows


def queries(catalog: Catalog, n: int, seed: int = 9) -> np.ndarray:
    """Noisy copies of catalog photos (any brand)."""
    vectors = catalog[0]
    rng = np.random.default_rng(seed)
    picks = vectors[rng.integers(0, len(vectors), n)] + 0.5 * units(rng, n)
    return picks / np.linalg.norm(picks, axis=1, keepdims=True)


def brand_filters(brands: np.ndarray) -> list[list[str] | None]:
    """From the smallest brand to all of them (None = no filter)."""
    counts = np.bincount(brands, minlength=N_BRANDS)
    order = [f"b{b}" for b in np.argsort(counts)]
    return [[order[0]], [order[-1]], order[:2], order[:4], order[-4:], order, None]


def available(brands: np.ndarray, brand_filter: list[str] | None) -> int:
    if brand_filter is None:
        return len(brands)
    return int(np.isin(brands, [int(b[1:]) for b in brand_filter]).sum())


def exact_ids(conn: psycopg.Connection, q: np.ndarray, brands: list[str] | None, k: int,
              model: str = MODEL) -> list[int]:
    """Exact filtered top-k from PostgreSQL with index scans disabled: the truth."""
    return _exact(conn, q, brands, k, model, None)


def exact_ids_in_cells(conn: psycopg.Connection, q: np.ndarray, brands: list[str] | None, k: int,
                       cells: tuple[int, ...], model: str = MODEL) -> list[int]:
    """Exact filtered top-k among the rows of `cells` and the rows without a cell: what a cells
    plan probing `cells` must return, row for row."""
    return _exact(conn, q, brands, k, model, cells)


def _exact(conn: psycopg.Connection, q: np.ndarray, brands: list[str] | None, k: int, model: str,
           cells: tuple[int, ...] | None) -> list[int]:
    where = "model_version = %s"
    params: list[object] = [model]
    if cells is not None:
        where += " AND (cell = ANY(%s::int4[]) OR cell IS NULL)"
        params.append(list(cells))
    if brands is not None:
        where += " AND brand = ANY(%s)"
        params.append(brands)
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")  # no HNSW (lossy) scan
        rows = conn.execute(f"SELECT id FROM sku_image_embeddings WHERE {where} "
                            "ORDER BY embedding <=> %s, id LIMIT %s", [*params, q, k]).fetchall()
    return [r[0] for r in rows]


def copy_rows(conn: psycopg.Connection, vectors: np.ndarray, brands: list[str], skus: list[str],
              model: str = MODEL) -> None:
    with conn.cursor().copy("COPY sku_image_embeddings (sku_id, brand, image_url, image_rank, "
                            "image_hash, embedding, model_version, metadata) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["text", "text", "text", "int2", "text", "vector", "text", "jsonb"])
        for i in range(len(vectors)):
            cp.write_row((skus[i], brands[i], f"https://cdn/{brands[i]}/{skus[i]}/{i}.jpg", i % PHOTOS,
                          f"h{brands[i]}{i}", vectors[i], model, Jsonb({"name": "x"})))


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return clustered_catalog()


@pytest.fixture(scope="session")
def loaded_url(pg_admin_url: str, _templates: dict[str, str], catalog: Catalog) -> Iterator[str]:
    """The catalog (cells trained and assigned) + 500 rows of another model version (no cells)."""
    name = "knn_loaded"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(_templates["production"])))
    url = with_database(pg_admin_url, name)
    vectors, brands, skus = catalog
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        copy_rows(conn, vectors, [f"b{b}" for b in brands], [f"S{s}" for s in skus])
        # Rows of another model version must never leak into results.
        conn.execute("INSERT INTO sku_image_embeddings (sku_id, brand, image_url, image_rank, image_hash,"
                     " embedding, model_version) SELECT sku_id, brand, image_url, image_rank, image_hash,"
                     " embedding, 'other-model' FROM sku_image_embeddings LIMIT 500")
        report = asyncio.run(_train_cells(url))
        assert (report.trained, report.assigned) == (CELLS, len(vectors)), report
        conn.execute("VACUUM ANALYZE sku_image_embeddings")
    yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def _train_cells(url: str) -> CellReport:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await ensure_cells(conn, MODEL, min_rows=0, cells=CELLS)


@pytest.fixture
def knn_clone_url(pg_admin_url: str, loaded_url: str) -> Iterator[str]:
    """A private copy of the loaded database, for tests that change it."""
    name = f"knn_clone_{next(_clones)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE knn_loaded").format(sql.Identifier(name)))
    yield with_database(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def pool(loaded_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(loaded_url, name="test", min_size=1, max_size=2, vector=True)
    yield pool
    await asyncio.gather(*refreshing(pool), return_exceptions=True)  # background reads end first
    await pool.close()
