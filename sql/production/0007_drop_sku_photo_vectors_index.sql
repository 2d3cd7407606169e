-- Drop the covering photo index of migration 0006. Measured at 235K photos
-- (bench/pgvector.py): the planner reads a SKU's photos through the narrow
-- (brand, sku_id, model_version) index and the heap, and ranking the ~750 photos of the best
-- SKUs costs the same either way (≈ 2.4 ms at p50, forced one way or the other), so the
-- second copy of every vector (≈ 0.5 GB) and its write per insert buy nothing.
DROP INDEX IF EXISTS sku_image_embeddings_sku_vectors;
