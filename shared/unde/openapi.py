"""OpenAPI 3.1 documents of the functions, built from the pydantic models they validate with.

Each function declares its routes once, next to its router, as `Operation`s (method, path,
request model, whether the image may come as an upload, response model, extra error codes),
builds its document with `document(...)` and passes it to `function_router(openapi=...)`, which
serves it at `GET /openapi.json`. Schemas come from pydantic's JSON Schema generation (JSON
Schema 2020-12 is OpenAPI 3.1's dialect), so the document cannot drift from what the handler
accepts. `unde openapi --write` refreshes the committed copies under docs/openapi/.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from unde import __version__
from unde.http import INTERNAL_TOKEN_HEADER
from unde.response_shapes import ErrorBody, HealthResponse

OPENAPI_VERSION = "3.1.0"
OPENAPI_PATH = "/openapi.json"
REF_TEMPLATE = "#/components/schemas/{model}"
#: Raw image bodies an upload endpoint accepts (unde.vision.image_input.RAW_IMAGE_TYPES).
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "application/octet-stream")
#: What every POST endpoint may answer besides 200 (the router and body parsing).
COMMON_ERRORS = (400, 401, 413, 415, 422)

STATUS_TEXT = {
    400: "Malformed request: the body is not JSON, or a header is malformed.",
    401: "Missing or wrong credentials.",
    404: "No such resource.",
    413: "The body or the image is too large (bytes or pixels).",
    415: "Unsupported Content-Type or image format.",
    422: "A field is invalid (named in `field`), or a URL the service will not fetch.",
    429: "Rate limited: too many requests for this user.",
    502: "An upstream service failed (named in `service`).",
    503: "An upstream service or database is unavailable.",
    504: "An upstream service or the image URL did not answer in time.",
}

Auth = Literal["internal", "app"]


@dataclass(frozen=True, slots=True)
class Operation:
    """One route of a function, described for the OpenAPI document."""

    method: str
    path: str
    summary: str
    response: type[BaseModel]
    body: type[BaseModel] | None = None
    body_required: bool = True
    upload_fields: tuple[str, ...] | None = None  # None: JSON only; else the image may be uploaded
    errors: tuple[int, ...] = ()
    event_stream: bool = False

    @property
    def key(self) -> tuple[str, str]:
        """`(METHOD, /path)`, as the router keys its routes."""
        return self.method.upper(), self.path


def _schema_refs(operations: Iterable[Operation]) -> tuple[dict[tuple[Any, str], Any], dict[str, Any]]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization"),
                                                            (HealthResponse, "serialization")]
    for operation in operations:
        if operation.body is not None:
            wanted.append((operation.body, "validation"))
        wanted.append((operation.response, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(unique, ref_template=REF_TEMPLATE)
    found: dict[tuple[Any, str], Any] = {(model, mode): ref for (model, mode), ref in refs.items()}
    return found, top.get("$defs", {})


def _binary() -> dict[str, Any]:
    return {"type": "string", "format": "binary"}


def _request_body(operation: Operation, body_ref: dict[str, Any] | None) -> dict[str, Any] | None:
    if body_ref is None and operation.upload_fields is None:
        return None
    content: dict[str, Any] = {}
    if body_ref is not None:
        content["application/json"] = {"schema": body_ref}
    if operation.upload_fields is not None:
        for media in IMAGE_MEDIA_TYPES:
            content[media] = {"schema": _binary()}
        properties: dict[str, Any] = {"image": _binary()}
        properties.update({name: {"type": "string"} for name in operation.upload_fields})
        content["multipart/form-data"] = {"schema": {"type": "object", "required": ["image"],
                                                     "properties": properties}}
    return {"required": operation.body_required, "content": content}


def _responses(operation: Operation, response_ref: dict[str, Any],
               error_ref: dict[str, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {"schema": response_ref}}
    if operation.event_stream:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": ok}}
    statuses = (COMMON_ERRORS if operation.method.upper() != "GET" else (401,)) + operation.errors
    for status in sorted(set(statuses)):
        responses[str(status)] = {"description": STATUS_TEXT[status],
                                  "content": {"application/json": {"schema": error_ref}}}
    return responses


def _upload_parameters(operation: Operation) -> list[dict[str, Any]]:
    return [{"name": name, "in": "query", "required": False, "schema": {"type": "string"},
             "description": "with a raw image body: the field that JSON would carry"}
            for name in operation.upload_fields or ()]


def _standard_paths(error_ref: dict[str, Any], health_ref: dict[str, Any]) -> dict[str, Any]:
    def get(summary: str, content: dict[str, Any]) -> dict[str, Any]:
        return {"get": {"summary": summary, "security": [],
                        "responses": {"200": {"description": "OK", "content": content}}}}

    return {
        "/healthz": get("Liveness/readiness; what the function reports about itself only with "
                        "the internal token",
                        {"application/json": {"schema": health_ref}}),
        "/metrics": get("Prometheus metrics", {"text/plain": {"schema": {"type": "string"}}}),
        OPENAPI_PATH: get("This document", {"application/json": {"schema": {"type": "object"}}}),
    }


def _security(auth: Auth) -> tuple[dict[str, Any], list[dict[str, list[str]]]]:
    if auth == "app":
        schemes = {"appApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                                 "description": "the app's API key (APP_API_KEYS), when configured"},
                   "appBearer": {"type": "http", "scheme": "bearer",
                                 "description": "the same key as `Authorization: Bearer <key>`"}}
        return schemes, [{"appApiKey": []}, {"appBearer": []}]
    schemes = {"internalToken": {"type": "apiKey", "in": "header", "name": INTERNAL_TOKEN_HEADER,
                                 "description": "function-to-function token (INTERNAL_TOKEN), "
                                                "when configured"}}
    return schemes, [{"internalToken": []}]


def document(service: str, operations: Sequence[Operation], *, description: str | None = None,
             auth: Auth = "internal") -> dict[str, Any]:
    """The OpenAPI 3.1 document of one function (its routes plus healthz, metrics, this)."""
    refs, defs = _schema_refs(operations)
    error_ref = refs[(ErrorBody, "serialization")]
    paths: dict[str, Any] = {}
    for operation in operations:
        body_ref = refs[(operation.body, "validation")] if operation.body is not None else None
        entry: dict[str, Any] = {
            "operationId": f"{service}_{operation.method.lower()}_{operation.path.strip('/')}",
            "summary": operation.summary,
        }
        parameters = _upload_parameters(operation)
        if parameters:
            entry["parameters"] = parameters
        request_body = _request_body(operation, body_ref)
        if request_body is not None:
            entry["requestBody"] = request_body
        entry["responses"] = _responses(operation, refs[(operation.response, "serialization")],
                                        error_ref)
        paths.setdefault(operation.path, {})[operation.method.lower()] = entry
    paths.update(_standard_paths(error_ref, refs[(HealthResponse, "serialization")]))
    schemes, security = _security(auth)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": f"UNDE {service}", "version": __version__,
                 "description": inspect.cleandoc(description or "")},
        "paths": paths,
        "components": {"schemas": defs, "securitySchemes": schemes},
        "security": security,
    }


def documented_routes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """`(METHOD, /path)` of every operation in a document."""
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def render(doc: dict[str, Any]) -> str:
    """The committed text of a document: stable key order, two-space indent, final newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
