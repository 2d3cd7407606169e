"""The OpenAPI documents: served at /openapi.json, committed in sync, covering every route."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.contracts.apps import FUNCTIONS, INTERNAL_TOKEN, Target
from unde.commands.openapi import DOCS_DIR, document_path, function_document, stale
from unde.openapi import OPENAPI_PATH, Operation, document, documented_routes, render
from unde.pipeline.inputs import FeedbackBody
from unde.response_shapes import ErrorBody, FeedbackResponse


def test_committed_documents_match_the_code() -> None:
    assert sorted(p.stem for p in DOCS_DIR.glob("*.json")) == sorted(FUNCTIONS)
    assert stale() == [], "docs/openapi is stale: run `unde openapi --write`"


def test_stale_detects_a_drifted_document(tmp_path: Path) -> None:
    for name in FUNCTIONS:
        document_path(name, tmp_path).write_text(render(function_document(name)))
    assert stale(tmp_path) == []
    drifted = json.loads(document_path("embedder", tmp_path).read_text())
    drifted["paths"]["/embed"]["post"]["summary"] = "changed"
    document_path("embedder", tmp_path).write_text(render(drifted))
    assert stale(tmp_path) == ["embedder"]


@pytest.mark.parametrize("target", FUNCTIONS, indirect=True)
async def test_served_document_is_committed_open_and_covers_every_route(target: Target) -> None:
    response = await target.client.get(OPENAPI_PATH)  # no credentials, though a token is configured
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(document_path(target.name).read_text())
    unauthenticated = await target.client.post(next(p for m, p in target.module.ROUTER.routes if m == "POST"))
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"] == "unauthorized"
    served = set(target.module.ROUTER.routes)
    assert served == documented_routes(target.document)
    for method, path in served:  # and each documented route really answers (not 404/405)
        if path == "/healthz":
            continue  # loads models and pools: covered by each function's own tests
        answer = await target.client.request(method, path, headers=target.headers)
        assert answer.status_code not in (404, 405), (method, path)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_documents_are_well_formed(name: str) -> None:
    doc = json.loads(document_path(name).read_text())
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == f"UNDE {name}"
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    refs = {ref.rsplit("/", 1)[-1] for ref in _refs(doc)}
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert "200" in operation["responses"], (method, path)
            if method == "post":
                assert {"400", "401", "413", "415", "422"} <= set(operation["responses"]), (method, path)


def _refs(value: object) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [ref for child in value.values() for ref in _refs(child)]
    if isinstance(value, list):
        return [ref for child in value for ref in _refs(child)]
    return []


def test_document_describes_uploads_errors_and_auth() -> None:
    doc = document("svc", [
        Operation("POST", "/thing", "Do it", FeedbackResponse, body=FeedbackBody,
                  upload_fields=("user_mall",), errors=(429,), event_stream=True)], auth="app")
    post = doc["paths"]["/thing"]["post"]
    content = post["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/FeedbackBody"}
    assert {"image/jpeg", "image/png", "image/webp", "multipart/form-data"} <= set(content)
    assert content["multipart/form-data"]["schema"]["required"] == ["image"]
    assert [p["name"] for p in post["parameters"]] == ["user_mall"]
    assert "text/event-stream" in post["responses"]["200"]["content"]
    assert post["responses"]["429"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert set(doc["components"]["securitySchemes"]) == {"appApiKey", "appBearer"}
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    feedback = doc["components"]["schemas"]["FeedbackBody"]
    assert feedback["properties"]["verdict"]["enum"] == ["right_item", "wrong_item", "bought", "dismissed"]
    error = doc["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error", "message"] and ErrorBody.model_json_schema()["title"] == "Error"


def test_internal_token_is_named_in_internal_documents() -> None:
    doc = json.loads(document_path("embedder").read_text())
    assert doc["security"] == [{"internalToken": []}]
    assert doc["components"]["securitySchemes"]["internalToken"]["name"] == "x-unde-internal-token"
    assert INTERNAL_TOKEN not in json.dumps(doc)
