"""Catalog indexing (the spec's `embed-batch`): plan missing images, queue them, embed them.

- `planner`: every catalog image in staging `raw_products` not yet embedded for the current
  model version becomes one `index_jobs` row (idempotent).
- `queue`: claim with `FOR UPDATE SKIP LOCKED` + a lease, complete, retry with backoff,
  dead-letter; the queue-depth SQL KEDA's postgresql trigger runs.
- `consumer`: fetch → hash → skip known hashes → decode → embed (worker thread, overlapped
  with the next batch's fetching) → insert + mark done in one transaction.
- `worker`: the loop KEDA-scaled pods run (`python -m unde.indexing.worker`).
"""
