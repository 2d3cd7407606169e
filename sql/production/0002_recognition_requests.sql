-- One row per recognition request: per-step timings and the v5.1 calibration fields.
-- gen_random_uuid() is built into PostgreSQL 13+, no pgcrypto needed.

CREATE TABLE IF NOT EXISTS recognition_requests (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID,
    photo_url TEXT NOT NULL,

    -- Step 1: detection
    detected_items JSONB,
    detection_time_ms INTEGER,

    -- Step 2: tagging
    tags JSONB,
    tagging_time_ms INTEGER,

    -- Step 3: visual search (dual retrieval)
    search_results JSONB,
    search_time_ms INTEGER,

    -- Step 3.5: availability post-filter
    availability_time_ms INTEGER,

    -- Step 4: visual rerank
    final_matches JSONB,
    rerank_time_ms INTEGER,

    -- Totals
    total_time_ms INTEGER,
    items_detected INTEGER,
    items_matched INTEGER,

    user_feedback JSONB,

    -- Calibration fields (threshold tuning and A/B tests)
    used_ximilar_booster BOOLEAN DEFAULT FALSE,
    used_ximilar_tagging BOOLEAN DEFAULT FALSE,
    pgvector_top1_score FLOAT,
    pgvector_margin FLOAT,
    ximilar_top1_score FLOAT,
    candidates_after_availability SMALLINT,

    created_at TIMESTAMPTZ DEFAULT NOW()
);

-- Beyond the spec: what the request ran with and how it degraded, so calibration can slice by it.
ALTER TABLE recognition_requests ADD COLUMN IF NOT EXISTS user_mall TEXT;
ALTER TABLE recognition_requests ADD COLUMN IF NOT EXISTS flags JSONB;
ALTER TABLE recognition_requests ADD COLUMN IF NOT EXISTS degradations JSONB;
ALTER TABLE recognition_requests ADD COLUMN IF NOT EXISTS ximilar_credits INTEGER DEFAULT 0;

CREATE INDEX IF NOT EXISTS idx_recognition_user ON recognition_requests(user_id);
CREATE INDEX IF NOT EXISTS idx_recognition_created ON recognition_requests(created_at DESC);
