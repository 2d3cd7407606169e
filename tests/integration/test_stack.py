"""The real functions as separate processes against the embedded databases, end to end.

One recognition goes app → orchestrator → gateway → embedder/pgvector, reranker, staging DB,
and leaves one log row; the request id shows up in every function's JSON log; counters move.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.ports import port_shift
from unde import devstack
from unde.commands.demo import index_via_function
from unde.commands.recognize import post_photo
from unde.db.embedded import DatabaseUrls
from unde.synthetic.seed import seed_dataset

OFFSET = 1000 + port_shift()  # beside a developer's own dev stack on the default ports
REQUEST_ID = "5f0c6e2a-1d1b-4c1e-9d0e-000000000001"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str) -> Iterator[tuple[Path, DatabaseUrls]]:
    from tests.conftest import SQL_DIR
    from unde.db.embedded import ensure_database, with_database
    from unde.db.migrate import apply_migrations

    data_dir = tmp_path_factory.mktemp("stack")
    urls = DatabaseUrls(with_database(pg_admin_url, "it_production"), with_database(pg_admin_url, "it_staging"))
    for target, name, url in (("production", "it_production", urls.production),
                              ("staging", "it_staging", urls.staging)):
        ensure_database(pg_admin_url, name)
        apply_migrations(url, target, SQL_DIR)  # type: ignore[arg-type]
    seed_dataset(urls.staging, data_dir, scale="small", street_photos=3, render_images=False,
                 image_base_url=devstack.url_of("image_server", OFFSET))
    devstack.up(urls, data_dir, offset=OFFSET)
    try:
        yield data_dir, urls
    finally:
        devstack.down(data_dir)


def _log_rows(url: str, expect: int, timeout_s: float = 15.0) -> list[tuple[str, int]]:
    deadline = time.monotonic() + timeout_s
    while True:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT id::text, items_detected FROM recognition_requests").fetchall()
        if len(rows) >= expect or time.monotonic() > deadline:
            return [(str(row[0]), int(row[1])) for row in rows]
        time.sleep(0.1)


def _logs(data_dir: Path, name: str) -> str:
    return (devstack.state_dir(data_dir) / "logs" / f"{name}.log").read_text()


def test_one_recognition_across_all_functions(stack: tuple[Path, DatabaseUrls]) -> None:
    data_dir, urls = stack
    truth = json.loads((data_dir / "street" / "ground_truth.json").read_text())["photos"][0]
    with httpx.Client(timeout=120.0) as client:
        unauthenticated = client.post(devstack.url_of("indexer", OFFSET) + "/plan", json={})
        indexed = index_via_function(client, devstack.url_of("indexer", OFFSET), batch=128,
                                     headers=devstack.internal_headers(data_dir))
        assert unauthenticated.status_code == 401
        assert "dead" in indexed
        client.headers["x-request-id"] = REQUEST_ID
        response = post_photo(client, devstack.url_of("orchestrator", OFFSET), str(data_dir / "street" / truth["file"]),
                              truth["mall"])
        body = response.json()
        gateway_metrics = client.get(devstack.url_of("vision_gateway", OFFSET) + "/metrics").text

    assert response.status_code == 200, body
    assert body["request_id"] == REQUEST_ID
    assert body["items"] and all(item["matches"] for item in body["items"])
    for name in ("orchestrator", "vision_gateway", "llm_reranker", "embedder"):
        lines = [json.loads(line) for line in _logs(data_dir, name).splitlines() if line.startswith("{")]
        assert any(line.get("request_id") == REQUEST_ID for line in lines), name
    search_count = re.search(r'unde_http_requests_total\{method="POST",route="/search",service="vision_gateway",'
                             r'status="200"\} (\d+)', gateway_metrics)
    assert search_count and int(search_count.group(1)) >= len(body["items"])
    # The log row is written in the background, after the answer: wait for it (bounded).
    assert _log_rows(urls.production, expect=1) == [(REQUEST_ID, len(body["items"]))]
