from __future__ import annotations

import uuid

from unde import tracing


def test_headers_are_adopted_and_children_share_the_trace() -> None:
    parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    context = tracing.context_from_headers({"x-request-id": "req-1", "traceparent": parent})
    assert (context.request_id, context.trace_id) == ("req-1", "a" * 32)
    headers = context.headers()
    assert headers["x-request-id"] == "req-1"
    assert headers["traceparent"].startswith("00-" + "a" * 32 + "-") and "b" * 16 not in headers["traceparent"]


def test_malformed_headers_start_a_new_trace() -> None:
    context = tracing.context_from_headers({"x-request-id": "bad id with spaces", "traceparent": "garbage"})
    assert context.request_id != "bad id with spaces" and len(context.trace_id) == 32


def test_non_uuid_request_ids_map_to_a_stable_uuid() -> None:
    tracing.set_current(tracing.new_context("app-retry-42"))
    first = tracing.adopt_uuid_request_id()
    tracing.set_current(tracing.new_context("app-retry-42"))
    assert tracing.adopt_uuid_request_id() == first
    assert str(uuid.UUID(first)) == first
    same = str(uuid.uuid4())
    tracing.set_current(tracing.new_context(same))
    assert tracing.adopt_uuid_request_id() == same
    assert tracing.outbound_headers()["x-request-id"] == same
