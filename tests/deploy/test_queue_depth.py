"""KEDA's depth query, taken from the rendered ScaledObject, counts exactly the jobs a consumer
would claim (the claim condition of `unde.indexing.queue`)."""

from __future__ import annotations

import psycopg

from tests.deploy.chart import find, render_profile


def test_rendered_depth_query_counts_ready_jobs(production_url: str) -> None:
    (scaled,) = find(render_profile("default"), "ScaledObject")
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    rows = [  # (status, run_after offset, lease_until offset) → ready?
        ("pending", "-1 minute", None),          # ready
        ("pending", "+10 minutes", None),        # backing off: not yet
        ("running", "-5 minutes", "+5 minutes"),  # leased: not ready
        ("running", "-5 minutes", "-1 minute"),   # lease expired: reclaimable, ready
        ("running", "+5 minutes", "-1 minute"),   # expired lease, whatever run_after: ready
        ("done", "-5 minutes", None),
        ("dead", "-5 minutes", None),
    ]
    with psycopg.connect(production_url, autocommit=True) as conn:
        assert conn.execute(query).fetchone() == (0,)  # empty queue → KEDA scales to zero
        for i, (status, run_after, lease) in enumerate(rows):
            conn.execute(
                "INSERT INTO index_jobs (brand, sku_id, image_url, image_rank, model_version, status,"
                " run_after, lease_until) VALUES ('b', %s, 'http://img/x.jpg', 0, 'm', %s,"
                " now() + %s::interval, now() + %s::interval)",
                (f"sku{i}", status, run_after, lease))
        (count,) = conn.execute(query).fetchone() or (None,)
    assert count == 3
