"""No credential in the repository, none in printed settings, none in the JSON logs.

The log test drives every function with real secrets configured (internal token, app key,
Gemini key, a database password) and signed photo URLs (`?X-Amz-Signature=…`), captures every
log record through the project's JSON formatter at DEBUG, and looks for any of those values.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from tests.contracts.apps import APP_KEY, INTERNAL_TOKEN, running
from tests.contracts.fuzz import jpeg
from tests.fakes.gemini_server import API_KEY as GEMINI_KEY
from tests.fakes.gemini_server import fake_gemini
from tests.security.secret_scan import scan_repository, scan_text
from tests.security.servers import Hostile, serving
from unde import settings as settings_module
from unde.commands.common import ToolSettings
from unde.logs import JsonFormatter
from unde.redact import redact_url, scrub
from unde.settings import REPO_ROOT, load_settings, masked

#: Findings that are not credentials: (path, kind) → why.
ALLOWED = {
    ("tests/contracts/apps.py", "secret-assignment"): "the fake internal token the tests configure",
    ("tests/deploy/test_chart.py", "url-with-password"): "a sample the chart's own secret check must flag",
    ("tests/edge/test_fetch.py", "url-with-password"): "a URL with credentials the fetcher must refuse",
}
SIGNATURE = "Zq9SIGNATUREx7Kd2"
DB_PASSWORD = "pg-Pa55word-9f7e"


def test_no_credentials_in_repository_files() -> None:
    findings = [f for f in scan_repository(REPO_ROOT) if (f.path, f.kind) not in ALLOWED]
    assert not findings, "credential-looking strings:\n" + "\n".join(map(str, findings))


def test_scanner_finds_what_it_should() -> None:
    samples = {  # assembled at run time, so this file holds none of them
        "google-api-key": "GEMINI_API_KEY=" + "AIza" + "Sy" + "D3kq8Zr0aB7cXw1YpL9mN4vT6uE2sJ5hGf",
        "aws-access-key": "aws_key = " + "AKIA" + "Z7QW3RT5YU8IO2PL",
        "private-key": "-----BEGIN " + "RSA PRIVATE KEY-----",
        "url-with-password": "PRODUCTION_DB_URL=postgresql://app:" + "s3cr3tPw" + "@db:5432/unde",
        "secret-assignment": "XIMILAR_API_TOKEN=" + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c",
    }
    for kind, line in samples.items():
        assert kind in [f.kind for f in scan_text("x", line)], (kind, line)
    for harmless in ("INTERNAL_TOKEN=${INTERNAL_TOKEN}", "postgresql://app:" + "changeme@db/unde",
                     "api_key: <your-key>", "TOKEN_HEADER = x_unde_internal_token_header_name",
                     "GEMINI_API_KEY=", "postgresql:///unde?host=/tmp"):
        assert scan_text("x", harmless) == [], harmless


def _settings_classes() -> list[type[BaseSettings]]:
    found = {value for value in vars(settings_module).values()
             if isinstance(value, type) and issubclass(value, BaseSettings) and value is not BaseSettings}
    return sorted(found | {ToolSettings}, key=lambda cls: cls.__name__)


SECRET_NAME = ("token", "api_key", "password", "secret", "db_url", "api_keys")


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda cls: cls.__name__)
def test_settings_never_print_secrets(cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNDE_SECRETS_DIR", "/nonexistent")
    secret_fields = [name for name, info in cls.model_fields.items()
                     if info.annotation is not None and "SecretStr" in repr(info.annotation)]
    for name in cls.model_fields:  # anything named like a secret must be a SecretStr
        if any(part in name for part in SECRET_NAME):
            assert name in secret_fields, f"{cls.__name__}.{name} holds a secret but is not a SecretStr"
    values = {name: f"value-of-{name}-{DB_PASSWORD}" for name in secret_fields}
    if "gemini_api_key" in values:
        monkeypatch.delenv("RERANK_PROVIDER", raising=False)
    loaded = load_settings(cls, **values)
    for name in secret_fields:
        assert isinstance(getattr(loaded, name), SecretStr)
    shown = "\n".join([repr(loaded), str(loaded), repr(masked(loaded)), str(loaded.model_dump())])
    assert DB_PASSWORD not in shown
    if secret_fields:
        assert masked(loaded)[secret_fields[0]] == "***"


# ---- logs ----------------------------------------------------------------------------------

class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter("test"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured_logs() -> Iterator[_Capture]:
    handler = _Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture(scope="module")
def photo_host() -> Iterator[Hostile]:
    host = Hostile(jpeg((120, 160)))
    with serving(host):
        yield host


def _signed(host: Hostile, path: str) -> str:
    return host.url(f"{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20260101"
                    f"&X-Amz-Signature={SIGNATURE}")


def _secrets() -> list[str]:
    return [INTERNAL_TOKEN, APP_KEY, GEMINI_KEY, DB_PASSWORD, SIGNATURE]


CALLS: dict[str, list[tuple[str, Any]]] = {
    "orchestrator": [("/recognize", lambda h: {"photo_url": _signed(h, "/ok.jpg"), "user_mall": "Dubai Mall"}),
                     ("/recognize", lambda h: {"image": {"url": _signed(h, "/ok.jpg")}})],
    "vision_gateway": [("/detect", lambda h: {"url": _signed(h, "/ok.jpg")}),
                       ("/detect", lambda h: {"url": _signed(h, "/missing.jpg")}),
                       ("/search", lambda h: {"image": {"url": _signed(h, "/ok.jpg")}, "top_k": 3}),
                       ("/tag", lambda h: {"url": _signed(h, "/redirect?to=http%3A%2F%2F10.0.0.1%2Fx")})],
    "embedder": [("/embed", lambda h: {"image": {"url": _signed(h, "/ok.jpg")}}),
                 ("/embed", lambda h: {"images": [{"url": _signed(h, "/declared-huge")}]})],
    "llm_reranker": [("/tag", lambda h: {"url": _signed(h, "/ok.jpg")}),
                     ("/rerank", lambda h: {"image": {"base64": base64.b64encode(jpeg()).decode()},
                                            "tags": {"type": "coat"}, "candidates": [
                         {"brand": "b", "external_id": "x", "score": 0.5,
                          "image_urls": [_signed(h, "/ok.jpg"), _signed(h, "/missing.jpg")]}]})],
}


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_logs_never_contain_secrets_or_signatures(
        name: str, monkeypatch: pytest.MonkeyPatch, production_url: str, staging_url: str,
        tmp_path: Path, photo_host: Hostile, captured_logs: _Capture) -> None:
    env = {"ALLOWED_IMAGE_HOSTS": photo_host.host, "LOG_LEVEL": "DEBUG"}
    production = f"{production_url} password={DB_PASSWORD}"  # trust auth: accepted and ignored
    with fake_gemini() as (_, gemini_url):
        if name == "llm_reranker":
            env.update(RERANK_PROVIDER="gemini", GEMINI_API_KEY=GEMINI_KEY,
                       GEMINI_API_URL=f"{gemini_url}/v1beta", GEMINI_MAX_RETRIES="0")
        async with running(name, monkeypatch, production_url=production, staging_url=staging_url,
                           tmp_path=tmp_path, env=env) as target:
            logging.getLogger().setLevel(logging.DEBUG)
            statuses = []
            for path, build in CALLS[name]:
                response = await target.client.post(path, json=build(photo_host), headers=target.headers)
                statuses.append(response.status_code)
            await target.client.post(CALLS[name][0][0], json={})  # unauthenticated: 401, logged
    assert any(status == 200 for status in statuses), statuses  # the signed URLs were really used
    assert captured_logs.lines, "nothing was logged"
    leaks = [(secret, line) for line in captured_logs.lines for secret in _secrets() if secret in line]
    assert not leaks, "\n".join(f"{secret!r} in {line[:400]}" for secret, line in leaks)


def test_redact_url_and_scrub() -> None:
    assert redact_url("https://u:pw@cdn.example.com:8443/a/b.jpg?X-Amz-Signature=s#f") == \
        "https://cdn.example.com:8443/a/b.jpg"
    text = ('GET http://127.0.0.1:9/p.jpg?X-Amz-Signature=abc&x=1 "HTTP/1.1 200 OK" and '
            "https://user:pw@h.example/x?token=t1, postgresql://app:pw@db/unde")
    cleaned = scrub(text)
    for secret in ("abc", "token=t1", "user:pw", "app:pw"):
        assert secret not in cleaned, cleaned
    assert "http://127.0.0.1:9/p.jpg?<redacted>" in cleaned and '"HTTP/1.1 200 OK"' in cleaned
