"""The offline reranker against a real production DB (embedded PostgreSQL + pgvector)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg_pool import AsyncConnectionPool

from unde.db.pool import open_pool
from unde.errors import UpstreamUnavailable
from unde.rerank.candidates import RerankCandidate
from unde.rerank.combine import Weights
from unde.rerank.offline import OfflineReranker, stored_photo_similarity

DIM = 512
MODEL = "local-test-1"


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def blend(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    vector = weight * a + (1 - weight) * b
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def insert_photos(url: str, brand: str, sku: str, vectors: Sequence[np.ndarray],
                  model_version: str = MODEL, metadata: str = "{}") -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        for rank, vector in enumerate(vectors):
            conn.execute(
                "INSERT INTO sku_image_embeddings (sku_id, brand, image_url, image_rank, image_hash,"
                " embedding, model_version, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (sku, brand, f"http://img/{brand}/{sku}/{rank}.jpg", rank, f"{sku}-{rank}-{model_version}",
                 vector, model_version, metadata))


@pytest.fixture
async def pool(production_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(production_url, name="production", min_size=0, vector=True)
    yield pool
    await pool.close()


async def test_best_of_all_stored_photos_counts(production_url: str, pool: AsyncConnectionPool) -> None:
    crop = unit(1)
    # sku A: 6 photos, only the 5th resembles the crop; sku B: a moderately similar first photo
    insert_photos(production_url, "b1", "A", [unit(10 + i) for i in range(4)] + [blend(crop, unit(99), 0.9),
                                                                             unit(20)])
    insert_photos(production_url, "b1", "B", [blend(crop, unit(98), 0.5), unit(30), unit(31)])
    # same SKU, other model version: must be ignored even though it matches perfectly
    insert_photos(production_url, "b1", "B", [crop], model_version="other-model")
    stored = await stored_photo_similarity(pool, crop, MODEL, [("b1", "A"), ("b1", "B"), ("b1", "C")])
    assert set(stored) == {("b1", "A"), ("b1", "B")}
    assert stored[("b1", "A")].photos == 6 and stored[("b1", "A")].best_rank == 4
    assert stored[("b1", "A")].similarity > 0.95
    assert stored[("b1", "B")].similarity < 0.9
    similarities = stored[("b1", "A")].similarities
    assert list(similarities) == sorted(similarities, reverse=True)  # every photo, best first
    assert similarities[0] == stored[("b1", "A")].similarity
    assert stored[("b1", "A")].aggregate("mean") == pytest.approx(float(np.mean(similarities)))
    assert stored[("b1", "A")].aggregate("top2") == pytest.approx(float(np.mean(similarities[:2])))


async def test_visual_aggregate_rewards_several_matching_views(production_url: str,
                                                               pool: AsyncConnectionPool) -> None:
    crop = unit(5)
    # "lucky": one photo very like the crop, five unrelated; "steady": five photos fairly like it
    insert_photos(production_url, "b", "lucky", [blend(crop, unit(60), 0.9)] + [unit(61 + i) for i in range(5)])
    insert_photos(production_url, "b", "steady", [blend(crop, unit(70 + i), 0.75) for i in range(5)])
    candidates = [RerankCandidate("b", "lucky", 0.9, ("u",), {}), RerankCandidate("b", "steady", 0.8, ("u",), {})]
    order = {}
    for aggregate in ("best", "top2", "top3", "mean"):
        ranked = await OfflineReranker(pool, Weights(0.7, 0.3), visual_aggregate=aggregate).rerank(
            candidates, {}, embedding=crop.tolist(), model_version=MODEL)
        order[aggregate] = [r.external_id for r in ranked]
        if aggregate == "top3":
            assert "mean of the best 3 of 5 stored photos" in ranked[0].reason
    assert order["best"] == ["lucky", "steady"]
    assert order["top2"] == order["top3"] == order["mean"] == ["steady", "lucky"]
    with pytest.raises(ValueError, match="visual aggregate"):
        OfflineReranker(pool, Weights(), visual_aggregate="median")  # type: ignore[arg-type]


async def test_offline_tagger_colour_is_not_trusted_but_category_is(production_url: str,
                                                                    pool: AsyncConnectionPool) -> None:
    crop = unit(6)
    insert_photos(production_url, "br", "bag-red", [blend(crop, unit(80), 0.85)])
    insert_photos(production_url, "br", "coat-red", [blend(crop, unit(81), 0.8)])
    insert_photos(production_url, "br", "coat-navy", [blend(crop, unit(82), 0.78)])
    candidates = [
        RerankCandidate("br", "bag-red", 0.9, ("u",), {"category": "bag", "colour": "red"}),
        RerankCandidate("br", "coat-red", 0.8, ("u",), {"category": "outerwear", "colour": "red"}),
        RerankCandidate("br", "coat-navy", 0.7, ("u",), {"category": "outerwear", "colour": "navy"}),
    ]
    tags = {"category": "outerwear", "color": "navy", "probabilities": {"color": 0.99}}
    reranker = OfflineReranker(pool, Weights(0.7, 0.3))  # assumes the offline tagger's tags
    ranked = await reranker.rerank(candidates, tags, embedding=crop.tolist(), model_version=MODEL)
    # the detected category demotes the bag; the offline colour guess decides nothing
    assert [r.external_id for r in ranked] == ["coat-red", "coat-navy", "bag-red"]
    assert "colour" not in ranked[0].reason
    trusted = await reranker.rerank(candidates, {**tags, "tag_provider": "ximilar"},
                                    embedding=crop.tolist(), model_version=MODEL)
    assert [r.external_id for r in trusted][:2] == ["coat-navy", "coat-red"]


async def test_rerank_uses_stored_photos_and_semantics(production_url: str,
                                                       pool: AsyncConnectionPool) -> None:
    crop = unit(2)
    insert_photos(production_url, "br", "coat-navy", [unit(40), blend(crop, unit(41), 0.8)])
    insert_photos(production_url, "br", "coat-red", [blend(crop, unit(42), 0.8), unit(43)])
    candidates = [
        # the search liked the red coat more; both look alike; the tags say navy
        RerankCandidate("br", "coat-red", 0.9, ("u",), {"product_type": "coat", "colour": "red"}),
        RerankCandidate("br", "coat-navy", 0.8, ("u",), {"product_type": "coat", "colour": "navy"}),
        RerankCandidate("br", "not-indexed", 0.7, ("u",), {"product_type": "coat"}),
        RerankCandidate("br", "no-photos", 0.99, (), {"product_type": "coat", "colour": "navy"}),
    ]
    reranker = OfflineReranker(pool, Weights(0.7, 0.3))
    ranked = await reranker.rerank(candidates, {"type": "coat", "color": "navy", "tag_provider": "ximilar"},
                                   embedding=crop.tolist(), model_version=MODEL)
    by_id = {r.external_id: r for r in ranked}
    assert ranked[0].external_id == "coat-navy"
    assert by_id["coat-navy"].visual == pytest.approx(by_id["coat-red"].visual, abs=0.05)
    assert "stored photos" in by_id["coat-navy"].reason
    assert by_id["not-indexed"].visual == pytest.approx(0.7)
    assert "no stored photo embeddings" in by_id["not-indexed"].reason
    assert by_id["no-photos"].visual is None and "semantics only" in by_id["no-photos"].reason
    assert by_id["no-photos"].score == pytest.approx(0.3 * by_id["no-photos"].semantic)


async def test_without_embedding_search_scores_stand_in(pool: AsyncConnectionPool) -> None:
    candidates = [RerankCandidate("b", "1", 0.4, ("u",), {}), RerankCandidate("b", "2", 0.6, ("u",), {})]

    async def embedder_down() -> tuple[Sequence[float], str]:
        raise UpstreamUnavailable("embedder", "connection refused")

    ranked = await OfflineReranker(pool, Weights(0.7, 0.3)).rerank(
        candidates, {}, embedding=None, model_version=None, embed_crop=embedder_down)
    assert [r.external_id for r in ranked] == ["2", "1"]
    assert ranked[0].visual == pytest.approx(0.6) and "could not be embedded" in ranked[0].reason


async def test_crop_embedder_is_used_when_no_embedding_given(production_url: str,
                                                             pool: AsyncConnectionPool) -> None:
    crop = unit(3)
    insert_photos(production_url, "b", "x", [crop])

    async def embed() -> tuple[Sequence[float], str]:
        return crop.tolist(), MODEL

    ranked = await OfflineReranker(pool, Weights(0.7, 0.3)).rerank(
        [RerankCandidate("b", "x", 0.1, ("u",), {})], {}, embedding=None, model_version=None,
        embed_crop=embed)
    assert ranked[0].visual == pytest.approx(1.0, abs=1e-4)


async def test_empty_candidates(pool: AsyncConnectionPool) -> None:
    assert await OfflineReranker(pool, Weights()).rerank([], {}, embedding=None, model_version=None) == []
