"""Text PostgreSQL cannot store (NUL, lone surrogates) is a 422 naming the field, not a 500.

Found by the thorough fuzz run: `/feedback` with `"brand": "\\u0000"` reached the jsonb update
and failed there. The JSON parser now refuses such strings for every endpoint, and uploads'
form fields and query parameters get the same check.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.contracts.apps import Target
from tests.contracts.fuzz import IMAGES

FEEDBACK = {"request_id": str(uuid.uuid4()), "item_id": 0, "verdict": "bought"}


@pytest.mark.parametrize("target", ["orchestrator"], indirect=True)
async def test_orchestrator_refuses_unstorable_text(target: Target) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/feedback", {"json": {**FEEDBACK, "brand": "zara\u0000"}}, "brand"),
        ("/feedback", {"json": {**FEEDBACK, "comment": "bad \ud800 text"}}, "comment"),
        ("/recognize", {"json": {"photo_url": "https://cdn.example.com/p.jpg", "user_mall": "\u0000"}},
         "user_mall"),
        ("/recognize", {"content": IMAGES[0], "params": {"user_mall": "Dubai\u0000Mall"},
                        "headers": {"content-type": "image/jpeg"}}, "user_mall"),
        ("/recognize", {"files": {"image": ("p.jpg", IMAGES[0], "image/jpeg")},
                        "data": {"user_id": "u\u0000"}}, "user_id"),
    ]
    for path, kwargs, field in cases:
        headers = {**target.headers, **kwargs.pop("headers", {})}
        if "json" in kwargs:  # ASCII-escaped, as a client would send a lone surrogate
            kwargs["content"] = json.dumps(kwargs.pop("json")).encode()
            headers["content-type"] = "application/json"
        response = await target.client.post(path, headers=headers, **kwargs)
        assert response.status_code == 422, (path, field, response.text)
        assert response.json()["field"] == field, (path, response.json())


@pytest.mark.parametrize("target", ["vision_gateway"], indirect=True)
async def test_gateway_refuses_unstorable_mall_names(target: Target) -> None:
    response = await target.client.post("/search", headers=target.headers, json={
        "image": {"base64": "aGVsbG8="}, "user_mall": "Mall\u0000"})
    assert response.status_code == 422 and response.json()["field"] == "user_mall", response.text


@pytest.mark.parametrize("target", ["embedder"], indirect=True)
async def test_an_empty_key_is_named_too(target: Target) -> None:
    """Found by the thorough fuzz run: `{"": "\\u0000"}` got a 422 naming the field ""."""
    for body, field in ((b'{"": "\\u0000"}', '""'), (b'{"a": {"": "\\u0000"}}', 'a.""')):
        response = await target.client.post("/embed", content=body, headers={
            **target.headers, "content-type": "application/json"})
        assert response.status_code == 422 and response.json()["field"] == field, response.text
