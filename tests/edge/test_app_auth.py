from __future__ import annotations

import pytest
from starlette.requests import Request

from unde.app_auth import AppKeys
from unde.errors import Unauthorized


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/recognize", "headers": raw})


def test_keys_disabled_admit_everyone() -> None:
    assert AppKeys.parse("").check(_request({})) is None


@pytest.mark.parametrize("headers", [{"authorization": "Bearer k2"}, {"x-api-key": "k1"}])
def test_a_valid_key_in_either_header(headers: dict[str, str]) -> None:
    assert AppKeys.parse("k1, k2").check(_request(headers)) in {"k1", "k2"}


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer nope"}, {"x-api-key": ""},
                                     {"authorization": "Basic k1"}])
def test_missing_or_wrong_keys_are_401(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized):
        AppKeys.parse("k1,k2").check(_request(headers))
