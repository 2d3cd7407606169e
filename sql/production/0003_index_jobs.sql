-- The indexing queue: one job per catalog image and model version.
-- Consumers claim with FOR UPDATE SKIP LOCKED and hold a lease; an expired lease is reclaimable,
-- so a consumer killed mid-batch loses nothing. KEDA's postgresql trigger counts ready jobs.
CREATE TABLE IF NOT EXISTS index_jobs (
    id            bigserial   PRIMARY KEY,
    brand         text        NOT NULL,
    sku_id        text        NOT NULL,
    image_url     text        NOT NULL,
    image_rank    smallint    NOT NULL,
    model_version text        NOT NULL,
    metadata      jsonb,
    status        text        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'done', 'dead')),
    attempts      integer     NOT NULL DEFAULT 0,
    run_after     timestamptz NOT NULL DEFAULT now(),
    lease_until   timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand, sku_id, image_url, model_version)
);

CREATE INDEX IF NOT EXISTS index_jobs_ready
    ON index_jobs (run_after) WHERE status IN ('pending', 'running');
