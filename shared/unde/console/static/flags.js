// What each degradation flag means, in plain words (unknown flags are shown by name only).

const MEANINGS = {
  rerank_unavailable: "The LLM reranker did not answer: cards are in search order with search scores.",
  context_tags_unavailable: "Context tags (style, occasion) from the LLM could not be had.",
  garment_tags_unavailable: "Garment tags (colour, material) could not be had.",
  search_unavailable: "Visual search failed for this garment.",
  availability_unavailable: "The staging DB did not answer: results are NOT filtered by the mall's stock.",
  fallback_unavailable: "The attribute fallback (same style) query failed.",
  deadline: "The request budget ran out: some garments are answered with what was known.",
  ximilar_not_configured: "Ximilar is not configured: pgvector and the local models answered alone.",
  ximilar_disabled_by_backend: "SEARCH_BACKEND does not use Ximilar.",
  ximilar_search_failed: "The Ximilar search failed; pgvector answered alone.",
  ximilar_search_timeout: "The Ximilar search timed out; pgvector answered alone.",
  ximilar_detect_failed: "Ximilar detection failed; the local detector answered.",
  pgvector_unavailable: "pgvector search failed.",
  embedder_unavailable: "The embedder did not answer.",
  circuit_open: "A provider's circuit breaker is open (too many recent failures).",
  unknown_mall: "The mall has no stores in the staging DB.",
};

export function meaning(flag) {
  return MEANINGS[flag] || "";
}
