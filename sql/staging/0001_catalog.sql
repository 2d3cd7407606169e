-- Staging DB: what the scrapers write. Columns are the ones the spec's SQL uses, plus the
-- attributes the attribute fallback and the synthetic catalog need.
CREATE TABLE IF NOT EXISTS raw_stores (
    brand      text NOT NULL,
    store_id   text NOT NULL,
    name       text NOT NULL,
    address    text,
    mall_name  text NOT NULL,
    floor      text,
    city       text,
    PRIMARY KEY (brand, store_id)
);
CREATE INDEX IF NOT EXISTS raw_stores_mall ON raw_stores (mall_name, brand);

CREATE TABLE IF NOT EXISTS raw_products (
    brand        text          NOT NULL,
    external_id  text          NOT NULL,
    name         text          NOT NULL,
    price        numeric(10,2) NOT NULL,
    currency     text          NOT NULL DEFAULT 'AED',
    category     text          NOT NULL,   -- coarse: top | outerwear | dress | bottom | shoes | bag
    product_type text,                     -- fine: bomber_jacket, jeans, ...
    colour       text,
    material     text,
    pattern      text,
    image_urls   jsonb         NOT NULL DEFAULT '[]'::jsonb,  -- ordered; on-model shots flagged in image_kinds
    image_kinds  jsonb         NOT NULL DEFAULT '[]'::jsonb,  -- per image: flat | on_model | detail
    updated_at   timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (brand, external_id)
);
-- Attribute fallback: type/category + colour, ordered by price.
CREATE INDEX IF NOT EXISTS raw_products_type_colour ON raw_products (product_type, colour, price);
CREATE INDEX IF NOT EXISTS raw_products_category_colour ON raw_products (category, colour, price);

CREATE TABLE IF NOT EXISTS raw_availability (
    id             bigserial   PRIMARY KEY,
    brand          text        NOT NULL,
    store_id       text        NOT NULL,
    product_id     text        NOT NULL,   -- raw_products.external_id
    sizes_in_stock jsonb       NOT NULL DEFAULT '[]'::jsonb,
    fetched_at     timestamptz NOT NULL DEFAULT now()
);
-- Serves the pair-driven lookup: for each (brand, product) the latest snapshot per store.
CREATE INDEX IF NOT EXISTS raw_availability_pair_latest
    ON raw_availability (brand, product_id, store_id, fetched_at DESC);
