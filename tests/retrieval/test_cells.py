"""IVF cells: k-means centroids, cell assignment, the probe order of a query, and `ensure_cells`
training once and assigning every row on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import psycopg
import pytest
from pgvector import Vector
from pgvector.psycopg import register_vector

from unde.retrieval.cells import (
    CellStats,
    as_array,
    cell_count,
    ensure_cells,
    load_centroids,
    nearest_cells,
    stats_from_rows,
    train_centroids,
)

from .conftest import DIM, copy_rows, units

BUSY = "another process is assigning cells"


def blobs(n_clusters: int, per: int, spread: float = 0.2, seed: int = 0) -> np.ndarray:
    """`n_clusters` well separated groups of `per` unit vectors (DIM-d)."""
    rng = np.random.default_rng(seed)
    centres = units(rng, n_clusters)
    x = np.repeat(centres, per, axis=0) + spread * units(rng, n_clusters * per)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    v = vectors.astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.argmax(v @ centroids.astype(np.float64).T, axis=1)


# --- cell_count ---------------------------------------------------------------------------------

def test_cell_count_is_a_power_of_two_near_the_square_root_within_bounds() -> None:
    assert [cell_count(r) for r in (0, 1, 256, 10_000, 100_000, 235_000, 10**9)] == [
        16, 16, 16, 128, 256, 512, 4096]
    previous = 0
    for rows in np.unique(np.geomspace(1, 10**9, 400).astype(np.int64)):
        n = cell_count(int(rows))
        assert 16 <= n <= 4096 and n & (n - 1) == 0, rows
        assert n >= previous, rows  # more rows never means fewer cells
        previous = n
        if 16 * math.sqrt(2) <= math.sqrt(rows) <= 4096 / math.sqrt(2):
            assert math.sqrt(rows) / math.sqrt(2) <= n <= math.sqrt(rows) * math.sqrt(2), rows


def test_as_array_reads_every_form_the_adapters_return() -> None:
    """pgvector-python returns `Vector` (0.4+) or numpy; plain sequences come from callers."""
    values = [0.5, -1.25, 3.0]
    for value in (Vector(values), np.array(values, dtype=np.float64), values):
        out = as_array(value)
        assert out.dtype == np.float32 and out.tolist() == values


# --- train_centroids / nearest_cells ------------------------------------------------------------

def test_trained_centroids_are_unit_vectors_and_every_cell_is_used() -> None:
    x = blobs(12, 40)
    centroids = train_centroids(x, 12, seed=3)
    assert centroids.shape == (12, DIM) and centroids.dtype == np.float32
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    assert np.all(np.bincount(nearest_cells(x, centroids), minlength=12) > 0)


def test_training_is_deterministic_per_seed() -> None:
    x = blobs(6, 30, spread=0.8)
    assert np.array_equal(train_centroids(x, 8, seed=5), train_centroids(x, 8, seed=5))
    # vectors are normalised first: scaling them changes nothing
    assert np.allclose(train_centroids(3.0 * x, 8, seed=5), train_centroids(x, 8, seed=5), atol=1e-6)


def test_an_emptied_cell_is_reseeded_with_the_farthest_vector() -> None:
    """Many copies of two vectors and one outlier: an initial pick of two copies of the same
    vector leaves a cell empty; re-seeding it gives every distinct vector its own cell."""
    a, b, c = np.eye(DIM, dtype=np.float32)[:3]
    x = np.stack([a] * 50 + [b] * 50 + [c])
    for seed in range(20):
        centroids = train_centroids(x, 3, seed=seed)
        assert np.all(np.bincount(nearest_cells(x, centroids), minlength=3) > 0), seed
        assert sorted(np.argmax(centroids, axis=1).tolist()) == [0, 1, 2], seed


def test_train_centroids_rejects_impossible_cell_counts() -> None:
    x = blobs(2, 5)
    for n in (0, 11):
        with pytest.raises(ValueError):
            train_centroids(x, n)


def test_nearest_cells_matches_brute_force_cosine() -> None:
    rng = np.random.default_rng(11)
    centroids = train_centroids(blobs(8, 20), 8)
    vectors = rng.standard_normal((333, DIM)).astype(np.float32) * rng.uniform(0.1, 10, (333, 1))
    expected = brute_nearest(vectors, centroids)
    assert np.array_equal(nearest_cells(vectors, centroids), expected)
    assert np.array_equal(nearest_cells(vectors, centroids, chunk=7), expected)  # chunked alike
    with pytest.raises(ValueError):
        nearest_cells(vectors[:, :10], centroids)
    with pytest.raises(ValueError):
        nearest_cells(vectors[0], centroids)


# --- CellStats ----------------------------------------------------------------------------------

def ring(n: int) -> np.ndarray:
    """`n` unit centroids on a circle in 2-d: cell i at angle i·2π/n."""
    angles = np.arange(n) * 2 * np.pi / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def at(angle_cell: float, n: int) -> np.ndarray:
    angle = angle_cell * 2 * np.pi / n
    return np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)


STATS = CellStats(ring(8), per_brand={
    "a": np.array([10, 10, 0, 0, 10, 10, 10, 10]),
    "b": np.array([0, 0, 5, 5, 0, 0, 0, 0]),
})


def test_probe_walks_the_nearest_cells_until_the_filter_has_enough_rows() -> None:
    q = at(0.1, 8)  # nearest cells in order: 0, 1, 7, 2, 6, 3, 5, 4
    assert STATS.probe(q, ["a"], 1) == (0,)
    assert STATS.probe(q, ["a"], 10) == (0,)
    assert STATS.probe(q, ["a"], 11) == (0, 1)
    assert STATS.probe(q, ["a"], 21) == (0, 1, 7)
    # cells 2 and 3 hold no rows of "a": skipped, not counted
    assert STATS.probe(q, ["a"], 31) == (0, 1, 6, 7)
    assert STATS.probe(q, ["a"], 10**6) == (0, 1, 4, 5, 6, 7)
    assert STATS.probe(q, ["b"], 6) == (2, 3)
    assert STATS.probe(q, ["b", "a"], 25) == (0, 1, 7)
    assert STATS.probe(q, None, 25) == STATS.probe(q, ["a", "b"], 25)
    assert STATS.probe(q, ["b"], 10**6) == (2, 3)


def test_probe_of_unknown_brands_and_unscaled_queries() -> None:
    assert STATS.probe(at(3.0, 8), ["nobody"], 10) == ()
    assert STATS.probe(at(3.0, 8), ["b", "nobody"], 5) == (3,)
    assert STATS.probe(7.5 * at(4.2, 8), ["a"], 15) == STATS.probe(at(4.2, 8), ["a"], 15) == (4, 5)


def test_rows_per_cell_sums_the_filter() -> None:
    assert STATS.rows_per_cell(None).tolist() == [10, 10, 5, 5, 10, 10, 10, 10]
    assert STATS.rows_per_cell(["b", "nobody"]).tolist() == [0, 0, 5, 5, 0, 0, 0, 0]
    assert STATS.rows_per_cell([]).tolist() == [0] * 8


def test_stats_from_rows_keeps_unknown_cells_apart() -> None:
    stats = stats_from_rows(ring(4), [("a", 0, 3), ("a", 3, 4), ("a", None, 2), ("b", 1, 7),
                                      ("b", 4, 5), ("b", -1, 1), ("c", None, 9)])
    assert {b: c.tolist() for b, c in stats.per_brand.items()} == {"a": [3, 0, 0, 4], "b": [0, 7, 0, 0]}
    assert stats.unassigned == {"a": 2, "b": 6, "c": 9}
    assert stats.rows_per_cell(None).tolist() == [3, 7, 0, 4]


# --- ensure_cells on PostgreSQL ---------------------------------------------------------------

def load(url: str, n: int, model: str = "m1", seed: int = 0, brand: str = "brand") -> np.ndarray:
    """`n` clustered rows of `model` (cell NULL, as the indexer writes them before training)."""
    vectors = blobs(8, n // 8, spread=0.5, seed=seed)
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        copy_rows(conn, vectors, [brand] * len(vectors), [f"{brand}{seed}-{i}" for i in range(len(vectors))],
                  model=model)
    return vectors


def cells_of(url: str, model: str = "m1") -> dict[int, int | None]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, cell FROM sku_image_embeddings WHERE model_version = %s",
                            (model,)).fetchall()
    return {int(r[0]): r[1] for r in rows}


async def test_ensure_cells_waits_for_enough_rows(production_url: str) -> None:
    load(production_url, 200)
    async with await psycopg.AsyncConnection.connect(production_url, autocommit=True) as conn:
        report = await ensure_cells(conn, "m1")  # default MIN_TRAIN_ROWS
        assert (report.trained, report.assigned) == (0, 0) and "fewer than" in report.skipped
        report = await ensure_cells(conn, "m1", min_rows=201, cells=4)
        assert (report.trained, report.assigned) == (0, 0) and "201" in report.skipped
        assert await load_centroids(conn, "m1") is None
    assert set(cells_of(production_url).values()) == {None}


async def test_ensure_cells_trains_once_and_assigns_every_row_its_nearest_cell(production_url: str) -> None:
    load(production_url, 400)
    load(production_url, 80, model="m2")  # another model version: untouched
    async with await psycopg.AsyncConnection.connect(production_url, autocommit=True) as conn:
        report = await ensure_cells(conn, "m1", min_rows=400, cells=8, batch=64)
        assert (report.trained, report.assigned, report.skipped) == (8, 400, "")
        assert report.skus == 400  # one photo per SKU here: every SKU gets its vector
        centroids = await load_centroids(conn, "m1")
        assert centroids is not None and centroids.shape == (8, DIM)
        assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
        again = await ensure_cells(conn, "m1", min_rows=400, cells=8)
        assert (again.trained, again.assigned, again.skipped, again.skus) == (0, 0, "", 0)
        reloaded = await load_centroids(conn, "m1")
        assert reloaded is not None and np.array_equal(reloaded, centroids)  # not retrained
        assert await load_centroids(conn, "m2") is None
    with psycopg.connect(production_url) as conn:
        register_vector(conn)
        rows = conn.execute("SELECT cell, embedding, model_version FROM sku_image_embeddings ORDER BY id").fetchall()
        trained = conn.execute("SELECT DISTINCT trained_rows FROM embedding_cells").fetchall()
    assert trained == [(400,)]
    m1 = [r for r in rows if r[2] == "m1"]
    labels = brute_nearest(np.stack([r[1].to_numpy() for r in m1]), centroids)
    assert [r[0] for r in m1] == labels.tolist()
    assert np.all(np.bincount(labels, minlength=8) > 0)
    assert {r[0] for r in rows if r[2] == "m2"} == {None}


async def test_rows_written_after_training_are_assigned(production_url: str) -> None:
    load(production_url, 160)
    async with await psycopg.AsyncConnection.connect(production_url, autocommit=True) as conn:
        assert (await ensure_cells(conn, "m1", min_rows=0, cells=4)).trained == 4
        before = cells_of(production_url)
        later = load(production_url, 48, seed=7, brand="late")
        report = await ensure_cells(conn, "m1", min_rows=0, cells=4, batch=10)
        assert (report.trained, report.assigned) == (0, 48)
        centroids = await load_centroids(conn, "m1")
    assert centroids is not None
    after = cells_of(production_url)
    assert {i: after[i] for i in before} == before  # assigned rows are not moved
    new_ids = sorted(set(after) - set(before))
    assert [after[i] for i in new_ids] == brute_nearest(later, centroids).tolist()


async def test_load_centroids_needs_every_cell(production_url: str) -> None:
    """Cells 0 and 2 without 1 (a half-deleted retrain): not a usable set of centroids."""
    rng = np.random.default_rng(2)
    with psycopg.connect(production_url, autocommit=True) as conn:
        register_vector(conn)
        for cell, vector in zip((0, 2), units(rng, 2), strict=True):
            conn.execute("INSERT INTO embedding_cells (model_version, cell, centroid, trained_rows) "
                         "VALUES ('m1', %s, %s, 10)", (cell, vector))
    async with await psycopg.AsyncConnection.connect(production_url, autocommit=True) as conn:
        assert await load_centroids(conn, "m1") is None


async def test_ensure_cells_needs_autocommit(production_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(production_url) as conn:
        with pytest.raises(ValueError, match="autocommit"):
            await ensure_cells(conn, "m1", min_rows=0)


async def test_ensure_cells_restores_the_session(production_url: str) -> None:
    """The pool's statement timeout is back after the (unbounded) assignment, and the advisory
    lock is released."""
    load(production_url, 80)
    async with await psycopg.AsyncConnection.connect(
            production_url, autocommit=True, options="-c statement_timeout=5000") as conn:
        assert (await ensure_cells(conn, "m1", min_rows=0, cells=4)).assigned == 80
        row = await (await conn.execute("SHOW statement_timeout")).fetchone()
        assert row == ("5s",)
        locks = await (await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")).fetchone()
        assert locks == (0,)


async def _wait_until_blocked(conn: psycopg.AsyncConnection, pid: int, deadline_s: float = 30.0) -> None:
    """Until backend `pid` waits on a lock (polling: the point where a second caller must see
    the first one busy)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        row = await (await conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                        (pid,))).fetchone()
        if row and row[0] == "Lock":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"backend {pid} never blocked")


async def test_a_second_caller_returns_at_once_while_the_first_assigns(production_url: str) -> None:
    """The first caller is held mid-assignment (a row it must update is locked by another
    transaction); a second caller does nothing and says why; once the first is done, calls
    work again."""
    load(production_url, 80)
    connect = psycopg.AsyncConnection.connect
    async with (await connect(production_url, autocommit=True) as first,
                await connect(production_url, autocommit=True) as second,
                await connect(production_url, autocommit=True) as blocker):
        assert (await ensure_cells(first, "m1", min_rows=0, cells=4)).assigned == 80
        load(production_url, 8, seed=3, brand="late")
        await blocker.execute("BEGIN")
        await blocker.execute("SELECT id FROM sku_image_embeddings WHERE cell IS NULL FOR UPDATE")
        running = asyncio.create_task(ensure_cells(first, "m1", min_rows=0, cells=4))
        try:
            await _wait_until_blocked(second, first.info.backend_pid)
            busy = await ensure_cells(second, "m1", min_rows=0, cells=4)
            assert (busy.trained, busy.assigned, busy.skipped) == (0, 0, BUSY)
        finally:
            await blocker.execute("ROLLBACK")
        report = await asyncio.wait_for(running, 30)
        assert (report.trained, report.assigned, report.skipped) == (0, 8, "")
        idle = await ensure_cells(second, "m1", min_rows=0, cells=4)
        assert (idle.trained, idle.assigned, idle.skipped) == (0, 0, "")
    assert None not in cells_of(production_url).values()
