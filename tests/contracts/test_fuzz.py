"""Schema-driven fuzzing of every POST endpoint of every function (in-process, real fakes).

The fast run (`make test`) sends a bounded, deterministic set of requests per endpoint; the
`slow` run (`make reliability`) sends many more. Each answer is held to the function's own
OpenAPI document by `tests.contracts.fuzz.check_response`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.contracts.apps import Target
from tests.contracts.fuzz import B64_JPEG, check_response, requests_for, send
from unde.settings import REPO_ROOT

DOCS = {path.stem: json.loads(path.read_text()) for path in (REPO_ROOT / "docs" / "openapi").glob("*.json")}
ENDPOINTS = sorted((name, path) for name, doc in DOCS.items() for path, item in doc["paths"].items()
                   if "post" in item)

#: A valid request per endpoint: the mutations start from here, so they reach deep code.
EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("embedder", "/embed"): {"image": {"base64": B64_JPEG, "bbox": [0, 0, 64, 64]}},
    ("vision_gateway", "/detect"): {"image": {"base64": B64_JPEG}},
    ("vision_gateway", "/tag"): {"image": {"base64": B64_JPEG}, "category": "top"},
    ("vision_gateway", "/search"): {"image": {"base64": B64_JPEG}, "top_k": 5, "user_mall": "Dubai Hills Mall"},
    ("llm_reranker", "/tag"): {"image": {"base64": B64_JPEG}, "hints": {"type": "coat", "color": "red"}},
    ("llm_reranker", "/rerank"): {
        "embedding": [1.0] + [0.0] * 511, "model_version": "m1", "tags": {"type": "coat"},
        "candidates": [{"brand": "br", "external_id": "a", "score": 0.5, "image_urls": [],
                        "metadata": {"product_type": "coat"}}]},
    ("orchestrator", "/recognize"): {"photo_url": "https://cdn.example.com/p.jpg", "user_mall": "Dubai Hills Mall"},
    ("orchestrator", "/feedback"): {"request_id": str(uuid.UUID(int=7)), "item_id": 0, "verdict": "right_item"},
    ("indexer", "/embed_batch"): {"max_jobs": 3},
    ("indexer", "/plan"): {},
}

COMMON = settings(derandomize=True, database=None, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                         HealthCheck.data_too_large, HealthCheck.filter_too_much])


FUNCTIONS = sorted({name for name, _ in ENDPOINTS})
PER_FUNCTION_FAST = 50  # ≈ 25 per endpoint (1–3 endpoints per function)
PER_FUNCTION_THOROUGH = 800


async def _one(target: Target, data: st.DataObject) -> None:
    document = target.document
    path = data.draw(st.sampled_from([p for n, p in ENDPOINTS if n == target.name]), label="path")
    operation = document["paths"][path]["post"]
    request = data.draw(requests_for(operation, document["components"], EXAMPLES.get((target.name, path))),
                        label="request")
    response = await send(target.client, "POST", path, request, target.headers)
    event(f"{path} {request.label} → {response.status_code}")
    check_response(document, path, "POST", response, request)


def test_every_endpoint_has_an_example() -> None:
    assert set(EXAMPLES) == set(ENDPOINTS)


@pytest.mark.parametrize("target", FUNCTIONS, indirect=True)
@settings(COMMON, max_examples=PER_FUNCTION_FAST)
@given(data=st.data())
async def test_fuzz_fast(target: Target, data: st.DataObject) -> None:
    await _one(target, data)


@pytest.mark.slow
@pytest.mark.parametrize("target", FUNCTIONS, indirect=True)
@settings(COMMON, max_examples=PER_FUNCTION_THOROUGH)
@given(data=st.data())
async def test_fuzz_thorough(target: Target, data: st.DataObject) -> None:
    await _one(target, data)
