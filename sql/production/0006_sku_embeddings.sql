-- SKU vectors: the first stage of the mall-filtered top-k (shared/unde/retrieval/sku_cells.py).
-- One row per catalog SKU and model version: the mean of its photos' embeddings, in the cell of
-- the centroid nearest to it (the model version's photo cells, embedding_cells). A query ranks
-- the filter's SKUs in the nearest cells by this mean, then ranks every photo of the best ones
-- by its true distance. A SKU's photos agree (same garment), so ~1,600 SKU vectors + ~750
-- photos find the true top-50 photos about as well as 5,000 photos did (bench/pgvector.py).
CREATE TABLE IF NOT EXISTS sku_embeddings (
    model_version text        NOT NULL,
    brand         text        NOT NULL,
    sku_id        text        NOT NULL,
    embedding     vector(512) NOT NULL,              -- mean of the SKU's photo embeddings
    photos        integer     NOT NULL CHECK (photos > 0),  -- photo rows the mean was taken over
    cell          integer     CHECK (cell >= 0),    -- NULL: the model version has no cells yet
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_version, brand, sku_id)
);
ALTER TABLE sku_embeddings ALTER COLUMN embedding SET STORAGE PLAIN;

-- The first stage reads SKU vectors straight from this index (index-only scan, a cell's SKUs
-- side by side); the brand filter is an index condition. Also serves the per-(brand, cell)
-- counts the planner caches.
CREATE INDEX IF NOT EXISTS sku_embeddings_cell
    ON sku_embeddings (model_version, cell, brand) INCLUDE (photos, sku_id, embedding);

-- The second stage reads every photo of the chosen SKUs from this index (index-only: a SKU's
-- photos side by side), then fetches only the k winners' rows. A second copy of each vector
-- (≈ 0.5 GB at 235K photos); a 512-d vector (2,056 bytes) fits the btree's 2,704-byte tuple
-- limit with room for brand and SKU ids of a few hundred bytes.
CREATE INDEX IF NOT EXISTS sku_image_embeddings_sku_vectors
    ON sku_image_embeddings (model_version, brand, sku_id) INCLUDE (id, embedding);
