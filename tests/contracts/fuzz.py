"""Schema-driven request fuzzing against a function's own OpenAPI document.

Strategies: bodies generated from the documented JSON schema (a small generator for the subset
pydantic emits: objects, arrays, scalars, anyOf, enum/const, $ref, bounds), hand-written
mutations of a valid example (keys dropped, values swapped for arbitrary JSON, unknown keys,
broken images), arbitrary JSON, arbitrary bytes under any content type, broken image uploads and
multipart forms. `check_response` holds every answer to the contract: a documented status, no
500, documented 5xx only, every error a JSON body naming the problem, and a 200 body matching
the documented response schema.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
from hypothesis import strategies as st
from PIL import Image

HANG_S = 20.0  # no request may take longer (the functions' own deadlines are shorter)
FIELD_STATUSES = frozenset({400, 413, 415, 422})
MAX_LEAVES = 6


def jpeg(size: tuple[int, int] = (96, 128), colour: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def png(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, (10, 200, 30, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def gif(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("P", size, 3).save(buffer, format="GIF")
    return buffer.getvalue()


IMAGES = (jpeg(), png(), gif())
B64_JPEG = base64.b64encode(IMAGES[0]).decode()

#: Strings worth more than random text: images, URLs the SSRF guard must refuse, odd text.
INTERESTING_STRINGS = (
    B64_JPEG, base64.urlsafe_b64encode(IMAGES[1]).decode().rstrip("="), "", " ", "null", "0",
    "http://127.0.0.1:9/p.jpg", "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO", "http://[::1]/x", "http://2130706433/", "https://",
    "http://user:pw@example.com/", "outerwear", "top", "coat", "right_item", "Dubai Hills Mall",
    "00000000-0000-0000-0000-000000000000", "\u0000", "a\u0000b", "\ud800", "\ud7ff" * 3, "../../etc/passwd", "%00",
    "A" * 5000,
)

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
                         st.sampled_from(INTERESTING_STRINGS))
ANY_JSON = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=MAX_LEAVES)


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.rsplit("/", 1)[-1]
    return _resolve(components["schemas"][name], components)


def from_schema(schema: dict[str, Any], components: dict[str, Any],
                depth: int = 0) -> st.SearchStrategy[Any]:
    """Values valid against the (pydantic-emitted) JSON schema, biased towards edge cases."""
    schema = _resolve(schema, components)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema or "oneOf" in schema:
        return st.one_of([from_schema(s, components, depth + 1)
                          for s in schema.get("anyOf", schema.get("oneOf", []))])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _object(schema, components, depth)
    if kind == "array":
        items = from_schema(schema.get("items", {}), components, depth + 1) if depth < 4 else ANY_JSON
        low = schema.get("minItems", 0)
        return st.lists(items, min_size=low, max_size=min(schema.get("maxItems", low + 4), low + 4))
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False,
                         allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return ANY_JSON


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength", 64)
    if schema.get("format") == "uuid":
        return st.uuids().map(str)
    fits = [s for s in INTERESTING_STRINGS if low <= len(s) <= high]
    text = st.text(min_size=low, max_size=min(high, low + 40))
    return st.one_of(text, st.sampled_from(fits)) if fits else text


def _object(schema: dict[str, Any], components: dict[str, Any],
            depth: int) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    if depth > 4:
        return st.just({})
    return st.fixed_dictionaries(
        {name: from_schema(sub, components, depth + 1) for name, sub in properties.items()
         if name in required},
        optional={name: from_schema(sub, components, depth + 1)
                  for name, sub in properties.items() if name not in required})


# ---- mutations of a valid example ----------------------------------------------------------

def _broken_image() -> st.SearchStrategy[bytes]:
    """A real image truncated, bit-flipped or with junk appended."""
    def mutate(data: bytes, cut: float, flips: list[int], junk: bytes) -> bytes:
        out = bytearray(data[: max(1, int(len(data) * cut))])
        for index in flips:
            out[index % len(out)] ^= 0xFF
        return bytes(out) + junk
    return st.builds(mutate, st.sampled_from(IMAGES), st.floats(0.0, 1.0),
                     st.lists(st.integers(0, 10_000), max_size=4), st.binary(max_size=16))


def _mutate(example: Any, draw: st.DrawFn) -> Any:
    if not isinstance(example, dict) or not example:
        return draw(ANY_JSON)
    body = dict(example)
    key = draw(st.sampled_from(sorted(body)))
    action = draw(st.sampled_from(("drop", "replace", "extra", "image", "nest")))
    if action == "drop":
        body.pop(key)
    elif action == "replace":
        body[key] = draw(ANY_JSON)
    elif action == "extra":
        body[draw(st.text(min_size=1, max_size=12))] = draw(ANY_JSON)
    elif action == "image":
        broken = base64.b64encode(draw(_broken_image())).decode()
        body[key] = {"base64": broken} if key in ("image",) else broken
    else:
        body[key] = _mutate(body[key], draw) if isinstance(body[key], dict) else [body[key]]
    return body


# ---- whole requests ------------------------------------------------------------------------

@dataclass(frozen=True)
class FuzzRequest:
    """One request to send: body bytes, headers and query parameters."""

    content: bytes
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    label: str = ""

    def __repr__(self) -> str:
        shown = self.content[:300]
        return f"FuzzRequest({self.label}, {shown!r}, headers={self.headers}, params={self.params})"


def _json_request(label: str) -> Any:
    def wrap(value: Any) -> FuzzRequest:
        return FuzzRequest(json.dumps(value).encode(), {"content-type": "application/json"},
                           label=label)
    return wrap


def _multipart(fields: dict[str, str], image: bytes | None, name: str) -> FuzzRequest:
    files = {name: ("p.jpg", image, "image/jpeg")} if image is not None else None
    request = httpx.Request("POST", "http://fn/", data=fields or None, files=files)
    body = request.read()
    if not body:
        body = b"--x--\r\n"
    return FuzzRequest(body, {"content-type": request.headers.get("content-type",
                                                                    "multipart/form-data; boundary=x")},
                       label="multipart")


def requests_for(operation: dict[str, Any], components: dict[str, Any],
                 example: Any) -> st.SearchStrategy[FuzzRequest]:
    """Every kind of request worth sending to one documented operation."""
    content = operation.get("requestBody", {}).get("content", {})
    choices: list[st.SearchStrategy[FuzzRequest]] = []
    if "application/json" in content:
        schema = content["application/json"]["schema"]
        choices.append(from_schema(schema, components).map(_json_request("schema")))
    if example is not None:
        choices.append(st.composite(lambda draw: _mutate(example, draw))().map(_json_request("mutant")))
        choices.append(st.just(example).map(_json_request("example")))
    choices.append(ANY_JSON.map(_json_request("any-json")))
    kinds = sorted(set(content) | {"application/json", "text/plain", "application/xml", "",
                                   "image/tiff", "application/x-www-form-urlencoded"})
    choices.append(st.builds(lambda body, kind: FuzzRequest(body, {"content-type": kind} if kind else {},
                                                            label="bytes"),
                             st.binary(max_size=512), st.sampled_from(kinds)))
    if "multipart/form-data" in content:
        query_names = [p["name"] for p in operation.get("parameters", [])]
        field_values = st.dictionaries(st.sampled_from([*query_names, "image", "x"]),
                                       st.sampled_from(INTERESTING_STRINGS[:20]), max_size=3)
        images = st.one_of(st.sampled_from(IMAGES), _broken_image(), st.binary(max_size=64))
        choices.append(st.builds(lambda body, kind, params: FuzzRequest(
            body, {"content-type": kind}, params, label="upload"),
            images, st.sampled_from([k for k in content if k.startswith(("image/", "application/oct"))]),
            st.dictionaries(st.sampled_from(query_names or ["x"]),
                            st.sampled_from(INTERESTING_STRINGS[:20]), max_size=2)))
        choices.append(st.builds(_multipart, field_values, st.one_of(st.none(), images),
                                 st.sampled_from(["image", "file"])))
    return st.one_of(choices)


# ---- the contract --------------------------------------------------------------------------

def _validator(schema: dict[str, Any], document: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def check_response(document: dict[str, Any], path: str, method: str,
                   response: httpx.Response, sent: FuzzRequest) -> None:
    """Fail unless the answer is one the document promises, with a body that names the problem."""
    operation = document["paths"][path][method.lower()]
    status = response.status_code
    context = f"{method} {path} {sent!r} → {status} {response.text[:500]}"
    assert str(status) in operation["responses"], f"undocumented status: {context}"
    assert status < 500 or status in (502, 503, 504), f"server error: {context}"
    media = response.headers.get("content-type", "").split(";")[0]
    assert media == "application/json", f"not JSON: {context}"
    body = response.json()
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    errors = sorted(_validator(schema, document).iter_errors(body), key=str)
    assert not errors, f"body does not match the documented schema ({errors[0].message}): {context}"
    if status >= 400:
        assert body["message"].strip(), f"error without a message: {context}"
    if status in FIELD_STATUSES:
        assert isinstance(body.get("field"), str) and body["field"], f"error naming no field: {context}"


async def send(client: httpx.AsyncClient, method: str, path: str, request: FuzzRequest,
               headers: dict[str, str]) -> httpx.Response:
    """Send within HANG_S; a request that takes longer is a hang."""
    try:
        async with asyncio.timeout(HANG_S):
            return await client.request(method, path, content=request.content,
                                        headers={**headers, **request.headers}, params=request.params)
    except TimeoutError:
        raise AssertionError(f"{method} {path} hung for over {HANG_S}s: {request!r}") from None
