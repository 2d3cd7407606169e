-- Catalog image embeddings: one row per photo (spec: "per image, not per SKU").
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS sku_image_embeddings (
    id            bigserial PRIMARY KEY,
    sku_id        text        NOT NULL,              -- raw_products.external_id
    brand         text        NOT NULL,              -- raw_products.brand (composite key with sku_id)
    image_url     text        NOT NULL,
    image_rank    smallint    NOT NULL,              -- 0..6, order of the photo on the product page
    image_hash    text        NOT NULL,              -- SHA-256 of the image bytes, for idempotency
    embedding     vector(512),
    model_version text        NOT NULL DEFAULT 'fashionclip-2.0',
    metadata      jsonb,                             -- name, price, category, colour, ...
    created_at    timestamptz DEFAULT now(),
    UNIQUE (brand, sku_id, image_hash, model_version)
);

CREATE INDEX IF NOT EXISTS sku_image_embeddings_hnsw
    ON sku_image_embeddings
    USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);

CREATE INDEX IF NOT EXISTS sku_image_embeddings_brand
    ON sku_image_embeddings (brand);

-- The reranker reads every photo of a SKU for one model version; the indexer skips known hashes.
CREATE INDEX IF NOT EXISTS sku_image_embeddings_sku
    ON sku_image_embeddings (brand, sku_id, model_version);
CREATE INDEX IF NOT EXISTS sku_image_embeddings_hash
    ON sku_image_embeddings (image_hash, model_version);
