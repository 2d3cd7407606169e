"""A clustered catalog of the production shape, loaded once into a production database.

SKUs have 1–7 photos each, brands are Zipf-sized, and one brand holds only single-photo SKUs;
the SKU means are written by the product's own upkeep (`ensure_skus`) and the IVFFlat index is
built with more lists than the default so the index path is really approximate. Tests that
change the database work on a clone (`search_clone_url`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from unde.db.embedded import with_database
from unde.db.pool import open_pool
from unde.retrieval.sku_vectors import ensure_skus

MODEL = "test-model-v1"
OTHER = "other-model"
N_SKUS, N_BRANDS, DIM = 600, 8, 512
SOLO_SKUS = 80  # brand "solo": one photo each
K = 50
LISTS = 24
_clones = itertools.count()


@dataclass(frozen=True, slots=True)
class Catalog:
    vectors: np.ndarray  # (photos, DIM)
    brands: list[str]  # per photo
    skus: list[str]  # per photo

    def brand_skus(self, brands: list[str] | None) -> int:
        return len({(b, s) for b, s in zip(self.brands, self.skus, strict=True)
                    if brands is None or b in brands})

    def truth(self, q: np.ndarray, brands: list[str] | None, k: int) -> list[tuple[str, str, float]]:
        """Exact: every SKU's best photo, the k best SKUs (brand, sku, similarity)."""
        scores = self.vectors @ q
        best: dict[tuple[str, str], float] = {}
        for brand, sku, score in zip(self.brands, self.skus, scores, strict=True):
            if brands is None or brand in brands:
                key = (brand, sku)
                best[key] = max(best.get(key, -2.0), float(score))
        ranked = sorted(best.items(), key=lambda item: -item[1])[:k]
        return [(b, s, score) for (b, s), score in ranked]


def units(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_catalog(seed: int = 1) -> Catalog:
    """Cone + 24 styles (each brand uses 5) + SKU directions + photo noise."""
    rng = np.random.default_rng(seed)
    cone, styles = units(rng, 1)[0], units(rng, 24)
    sizes = 1.0 / np.arange(1, N_BRANDS + 1)
    sku_brand = rng.choice(N_BRANDS, N_SKUS, p=sizes / sizes.sum())
    brand_styles = np.stack([rng.choice(24, 5, replace=False) for _ in range(N_BRANDS + 1)])
    names = [f"b{b}" for b in sku_brand] + ["solo"] * SOLO_SKUS
    brand_index = np.concatenate([sku_brand, np.full(SOLO_SKUS, N_BRANDS)])
    sku_style = brand_styles[brand_index, rng.integers(0, 5, len(names))]
    sku_vec = 0.67 * cone + 0.5 * styles[sku_style] + 0.45 * units(rng, len(names))
    photos = np.concatenate([rng.integers(1, 8, N_SKUS), np.ones(SOLO_SKUS, dtype=int)])
    rows = np.repeat(np.arange(len(names)), photos)
    vectors = sku_vec[rows] + 0.3 * units(rng, len(rows))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Catalog(vectors.astype(np.float32), [names[r] for r in rows], [f"S{r}" for r in rows])


def queries(catalog: Catalog, n: int, seed: int = 9) -> np.ndarray:
    """Noisy copies of catalog photos (any brand)."""
    rng = np.random.default_rng(seed)
    picks = catalog.vectors[rng.integers(0, len(catalog.vectors), n)] + 0.5 * units(rng, n)
    return (picks / np.linalg.norm(picks, axis=1, keepdims=True)).astype(np.float32)


def brand_filters() -> list[list[str] | None]:
    """From one small brand to all of them (None = no filter)."""
    return [["b7"], ["solo"], ["b0"], ["b6", "b7"], ["b0", "b1", "b2", "b3"],
            [f"b{i}" for i in range(N_BRANDS)], None]


def copy_rows(conn: psycopg.Connection, catalog: Catalog, model: str = MODEL) -> None:
    with conn.cursor().copy("COPY sku_image_embeddings (sku_id, brand, image_url, image_rank, "
                            "image_hash, embedding, model_version, metadata) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["text", "text", "text", "int2", "text", "vector", "text", "jsonb"])
        for i, (brand, sku, vector) in enumerate(zip(catalog.brands, catalog.skus, catalog.vectors, strict=True)):
            cp.write_row((sku, brand, photo_url(brand, sku, i), i % 7, f"h{model}{i}", vector, model,
                          Jsonb({"name": f"{brand} {sku}"})))


def photo_url(brand: str, sku: str, row: int) -> str:
    return f"https://cdn/{brand}/{sku}/{row}.jpg"


async def backfill(url: str, model: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await ensure_skus(conn, model)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return clustered_catalog()


@pytest.fixture(scope="session")
def loaded_url(pg_admin_url: str, _templates: dict[str, str], catalog: Catalog) -> Iterator[str]:
    """The catalog + a copy of its first 500 photos under another model version."""
    name = "search_loaded"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(_templates["production"])))
    url = with_database(pg_admin_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        copy_rows(conn, catalog)
        conn.execute("INSERT INTO sku_image_embeddings (sku_id, brand, image_url, image_rank, image_hash,"
                     " embedding, model_version) SELECT sku_id, brand, image_url, image_rank, image_hash,"
                     " embedding, %s FROM sku_image_embeddings ORDER BY id LIMIT 500", (OTHER,))
        for model in (MODEL, OTHER):
            assert asyncio.run(backfill(url, model)) > 0
        conn.execute(f"ALTER INDEX sku_embeddings_ivf SET (lists = {LISTS})")
        conn.execute("REINDEX INDEX sku_embeddings_ivf")
        conn.execute("VACUUM ANALYZE")
    yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def search_clone_url(pg_admin_url: str, loaded_url: str) -> Iterator[str]:
    """A private copy of the loaded database, for tests that change it."""
    name = f"search_clone_{next(_clones)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE search_loaded").format(sql.Identifier(name)))
    yield with_database(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def pool(loaded_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(loaded_url, name="test", min_size=1, max_size=4, vector=True)
    yield pool
    await pool.close()
