-- Retrieval on pgvector's own indexes (shared/unde/retrieval/search.py): an IVFFlat index over
-- the SKU means chooses the candidate SKUs, their photos are ranked exactly. This retires the
-- hand-built search cells of migrations 0005-0007 (our k-means centroids, a cell per row).
-- Needs pgvector >= 0.8 (iterative index scans keep a filtered IVFFlat scan from coming back short).
DO $$
DECLARE found text;
BEGIN
    SELECT extversion INTO found FROM pg_extension WHERE extname = 'vector';
    IF found IS NULL OR string_to_array(found, '.')::int[] < ARRAY[0, 8] THEN
        RAISE EXCEPTION 'pgvector >= 0.8 is required, found %; upgrade the package, then run ALTER EXTENSION vector UPDATE', coalesce(found, 'none');
    END IF;
END $$;

DROP TABLE IF EXISTS embedding_cells;
ALTER TABLE sku_image_embeddings DROP COLUMN IF EXISTS cell;      -- and its two cell indexes
DROP INDEX IF EXISTS sku_embeddings_cell;
ALTER TABLE sku_embeddings DROP COLUMN IF EXISTS cell;

-- Photos are ranked exactly per SKU (the (brand, sku_id, model_version) btree of 0001); no query
-- walks a graph over all photos any more, so inserts stop maintaining one.
DROP INDEX IF EXISTS sku_image_embeddings_hnsw;

-- Small filters rank their SKU means exactly through this btree; it also answers the row count
-- that picks the exact path.
CREATE INDEX IF NOT EXISTS sku_embeddings_brand ON sku_embeddings (model_version, brand);

-- The first stage. IVFFlat trains its lists when built, so this starts with one list; the indexer
-- sets lists ≈ rows / 200 and rebuilds it (REINDEX CONCURRENTLY) as the catalog grows
-- (shared/unde/retrieval/sku_vectors.py).
CREATE INDEX IF NOT EXISTS sku_embeddings_ivf
    ON sku_embeddings USING ivfflat (embedding vector_cosine_ops) WITH (lists = 1);
