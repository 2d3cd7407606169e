"""The recognition pipeline the orchestrator runs: steps, concurrency, tiers, fallback, log."""
