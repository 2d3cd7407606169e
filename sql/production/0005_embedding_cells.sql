-- IVF-style cells for the mall-filtered top-k (see shared/unde/retrieval/cells.py).
-- Each catalog photo belongs to the cell of its nearest centroid (spherical k-means per model
-- version, trained by the indexer once the model version has enough rows). A query scans
-- exactly the filter's rows in the cells nearest to it, so brand filters cost nothing extra
-- and results never come back short.
CREATE TABLE IF NOT EXISTS embedding_cells (
    model_version text    NOT NULL,
    cell          integer NOT NULL,
    centroid      vector(512) NOT NULL,
    trained_rows  integer NOT NULL,                 -- rows the model version had at training
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_version, cell)
);

-- NULL: not assigned yet. A number ≥ the model version's cell count (a row written with an
-- older, larger training) is treated as unassigned by queries and by the assignment.
ALTER TABLE sku_image_embeddings ADD COLUMN IF NOT EXISTS cell integer CHECK (cell >= 0);

CREATE INDEX IF NOT EXISTS sku_image_embeddings_cell
    ON sku_image_embeddings (model_version, cell, brand);

-- Rows written before their model version had centroids: always scanned, normally none.
CREATE INDEX IF NOT EXISTS sku_image_embeddings_unassigned
    ON sku_image_embeddings (model_version, brand) WHERE cell IS NULL;

-- The per-brand and per-shard partial HNSW indexes of the previous design (created at run
-- time by the indexer) are replaced by the cells: drop them so inserts stop maintaining them.
DO $$
DECLARE name text;
BEGIN
    FOR name IN SELECT c.relname FROM pg_class AS c
                WHERE c.relkind = 'i' AND starts_with(c.relname::text, 'sku_image_embeddings_hnsw_b_')
    LOOP
        EXECUTE format('DROP INDEX IF EXISTS %I', name);
    END LOOP;
END $$;
