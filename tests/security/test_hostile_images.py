"""Hostile and odd images through the real endpoints: a correct decode or a clear 4xx, never 5xx.

Embedder `/embed` and gateway `/detect` decode the image (raw upload and base64 JSON both);
the orchestrator's upload path only sniffs the container before passing the photo on, so it
must refuse what is plainly not an image and never fail on the rest.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.contracts.apps import Target
from tests.security.hostile_images import HostileImage, cases

MAGIC_OK = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")


def _check(case: HostileImage, response: httpx.Response, form: str) -> dict[str, Any]:
    body = response.json()
    where = f"{case.name} ({form}) → {response.status_code} {str(body)[:300]}"
    if case.expect == "ok":
        assert response.status_code == 200, where
    else:
        assert response.status_code == case.expect, where
        assert body["message"] and body.get("field"), where
    return body


async def _both_forms(target: Target, path: str, case: HostileImage) -> list[dict[str, Any]]:
    raw = await target.client.post(path, content=case.data,
                                   headers={**target.headers, "content-type": case.content_type})
    encoded = await target.client.post(path, json={"image": {"base64": base64.b64encode(case.data).decode()}},
                                       headers=target.headers)
    return [_check(case, raw, "raw upload"), _check(case, encoded, "base64 JSON")]


@pytest.mark.parametrize("target", ["embedder"], indirect=True)
async def test_embedder_decodes_or_refuses_every_hostile_image(target: Target) -> None:
    for case in cases():
        for body in await _both_forms(target, "/embed", case):
            if case.expect == "ok":
                assert len(body["embedding"]) == 512, case.name


@pytest.mark.parametrize("target", ["vision_gateway"], indirect=True)
async def test_gateway_decodes_upright_or_refuses_every_hostile_image(target: Target) -> None:
    for case in cases():
        for body in await _both_forms(target, "/detect", case):
            if case.expect == "ok":
                assert (body["width"], body["height"]) == case.size, case.name


@pytest.mark.parametrize("target", ["orchestrator"], indirect=True)
async def test_orchestrator_upload_path_never_fails(target: Target) -> None:
    for case in cases():
        response = await target.client.post("/recognize", content=case.data,
                                             headers={**target.headers, "content-type": case.content_type})
        body = response.json()
        assert response.status_code < 500, (case.name, body)
        if not case.data.startswith(MAGIC_OK) and not (case.data[:4] == b"RIFF" and case.data[8:12] == b"WEBP"):
            assert response.status_code in (415, 422) and body["field"] == "image", (case.name, body)
