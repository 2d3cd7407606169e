from __future__ import annotations

import psycopg
import pytest

from unde.db.migrate import apply_migrations, migration_files
from unde.errors import ConfigError
from unde.settings import REPO_ROOT

SQL_DIR = REPO_ROOT / "sql"


def _columns(url: str, table: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
        ).fetchall()
    return {row[0] for row in rows}


@pytest.mark.parametrize("target", ["production", "staging"])
def test_migrations_apply_once_then_report_nothing_new(empty_db_url: str, target: str) -> None:
    first = apply_migrations(empty_db_url, target, SQL_DIR)  # type: ignore[arg-type]
    second = apply_migrations(empty_db_url, target, SQL_DIR)  # type: ignore[arg-type]

    names = [path.name for path in migration_files(SQL_DIR, target)]  # type: ignore[arg-type]
    assert first.applied == names
    assert second.applied == []
    assert second.already == names
    assert "nothing new" in second.summary()


def test_production_schema_matches_the_spec(empty_db_url: str) -> None:
    apply_migrations(empty_db_url, "production", SQL_DIR)

    assert {
        "id", "sku_id", "brand", "image_url", "image_rank", "image_hash", "embedding",
        "model_version", "metadata", "created_at",
    } <= _columns(empty_db_url, "sku_image_embeddings")
    assert {
        "id", "user_id", "photo_url", "detected_items", "detection_time_ms", "tags",
        "tagging_time_ms", "search_results", "search_time_ms", "availability_time_ms",
        "final_matches", "rerank_time_ms", "total_time_ms", "items_detected", "items_matched",
        "user_feedback", "used_ximilar_booster", "used_ximilar_tagging", "pgvector_top1_score",
        "pgvector_margin", "ximilar_top1_score", "candidates_after_availability", "created_at",
    } <= _columns(empty_db_url, "recognition_requests")
    with psycopg.connect(empty_db_url) as conn:
        # The spec's photo HNSW (m 16, ef_construction 64) is replaced by an IVFFlat index over
        # the SKU means (migration 0008, unde.retrieval.search): no query walks the photos' graph.
        indexdef = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'sku_embeddings_ivf'").fetchone()
        hnsw = conn.execute(
            "SELECT 1 FROM pg_indexes WHERE indexname = 'sku_image_embeddings_hnsw'").fetchone()
        unique = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'sku_image_embeddings'::regclass AND contype = 'u'"
        ).fetchone()
    assert indexdef is not None and hnsw is None
    assert "ivfflat" in indexdef[0] and "vector_cosine_ops" in indexdef[0]
    assert unique == ("UNIQUE (brand, sku_id, image_hash, model_version)",)


def test_staging_schema_has_the_columns_the_spec_sql_uses(empty_db_url: str) -> None:
    apply_migrations(empty_db_url, "staging", SQL_DIR)

    assert {"external_id", "brand", "name", "price", "image_urls", "category", "colour"} <= (
        _columns(empty_db_url, "raw_products"))
    assert {"brand", "store_id", "name", "address", "mall_name"} <= _columns(empty_db_url, "raw_stores")
    assert {"brand", "store_id", "product_id", "sizes_in_stock", "fetched_at"} <= (
        _columns(empty_db_url, "raw_availability"))


def test_an_edited_applied_migration_is_refused(empty_db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "staging"
    folder.mkdir()
    migration = folder / "0001_x.sql"
    migration.write_text("CREATE TABLE IF NOT EXISTS x (a int);")
    apply_migrations(empty_db_url, "staging", tmp_path)
    migration.write_text("CREATE TABLE IF NOT EXISTS x (a int, b int);")

    with pytest.raises(ConfigError, match="changed after it was applied"):
        apply_migrations(empty_db_url, "staging", tmp_path)
