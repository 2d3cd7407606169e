"""The console over HTTP (no browser): the setting, the key guard, sign-in, static files, its API."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.console.conftest import APP_KEY, DEMO_PHOTO, Orchestrator, _environment, jpeg
from tests.function_apps import client_for, load_function
from unde.app_auth import KEY_COOKIE
from unde.console.assets import load_assets
from unde.console.links import console_url
from unde.console.routes import connection, safe_next
from unde.errors import StoreError
from unde.settings import REPO_ROOT

STATIC = REPO_ROOT / "shared" / "unde" / "console" / "static"
CONSOLE_PATHS = ["/console", "/console/static/console.js", "/console/static/console.css", "/console/api/malls",
                 "/console/api/request?id=5f0c6e2a-1d1b-4c1e-9d0e-000000000001", "/console/api/demo-photos"]


async def test_console_is_a_404_unless_enabled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               production_url: str, staging_url: str) -> None:
    _environment(monkeypatch, tmp_path, production_url, staging_url)
    monkeypatch.delenv("CONSOLE_ENABLED")
    app, module = load_function("orchestrator")
    assert module.CONSOLE == {}
    async with client_for(app) as client:
        answers = [await client.get(path, headers={"x-api-key": APP_KEY}) for path in CONSOLE_PATHS]
    assert [a.status_code for a in answers] == [404] * len(CONSOLE_PATHS)
    assert all(a.json()["error"] == "not_found" for a in answers)


async def test_without_a_key_the_page_is_the_sign_in_form(orchestrator: Orchestrator) -> None:
    page = await orchestrator.client.get("/console?photo=x.jpg&mall=Dubai%20Hills%20Mall")
    assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
    assert 'action="/console/session"' in page.text and 'name="key"' in page.text
    for path in CONSOLE_PATHS[1:2] + CONSOLE_PATHS[3:]:
        answer = await orchestrator.client.get(path)
        assert answer.status_code == 401 and answer.json()["error"] == "unauthorized", path
    wrong = await orchestrator.client.get("/console/api/malls", headers={"x-api-key": "nope"})
    assert wrong.status_code == 401
    # What the sign-in form itself needs is open.
    for asset in ("console.css", "login.js"):
        assert (await orchestrator.client.get(f"/console/static/{asset}")).status_code == 200


async def test_with_the_key_the_console_and_its_files_are_served_strictly(orchestrator: Orchestrator) -> None:
    page = await orchestrator.client.get("/console", headers=orchestrator.headers)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    script = await orchestrator.client.get("/console/static/console.js", headers=orchestrator.headers)
    style = await orchestrator.client.get("/console/static/console.css")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert script.content == (STATIC / "console.js").read_bytes()


def _references() -> set[str]:
    """Every file the pages link or the modules import."""
    found: set[str] = set()
    for page in STATIC.glob("*.html"):
        found |= set(re.findall(r'(?:src|href)="/console/static/([^"]+)"', page.read_text()))
    for module in STATIC.glob("*.js"):
        found |= set(re.findall(r'from "\./([^"]+)"', module.read_text()))
    return found


async def test_every_linked_file_is_served_and_nothing_comes_from_elsewhere(orchestrator: Orchestrator) -> None:
    references = _references()
    assert {"console.js", "run-view.js", "past-view.js", "api.js", "console.css"} <= references
    for name in references:
        answer = await orchestrator.client.get(f"/console/static/{name}", headers=orchestrator.headers)
        assert answer.status_code == 200, name
    for path in STATIC.iterdir():  # offline: no CDN, no remote font, no remote script
        text = path.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', text), path.name
        assert not re.search(r'import[^;]*from "(?!\./)', text), path.name


def test_pyproject_ships_every_static_file_as_package_data() -> None:
    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["unde"]
    files = [str(path.relative_to(REPO_ROOT / "shared" / "unde")) for path in STATIC.iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in files), (files, patterns)
    assert set(load_assets()) == {path.name for path in STATIC.iterdir()}


async def test_sign_in_sets_an_http_only_strict_cookie_that_the_console_and_recognize_accept(
        orchestrator: Orchestrator) -> None:
    client = orchestrator.client
    form = {"content-type": "application/x-www-form-urlencoded"}
    denied = await client.post("/console/session", content="key=wrong&next=%2Fconsole%3Fmall%3DX", headers=form)
    assert denied.status_code == 303 and denied.headers["location"] == "/console?mall=X&denied=1"
    assert "set-cookie" not in denied.headers

    signed = await client.post("/console/session", content=f"key={APP_KEY}&next=%2Fconsole%3Fphoto%3Da.jpg",
                               headers={**form, "origin": "http://fn"})
    assert signed.status_code == 303 and signed.headers["location"] == "/console?photo=a.jpg"
    cookie = signed.headers["set-cookie"].lower()
    assert cookie.startswith(f"{KEY_COOKIE}={APP_KEY}".lower())
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert (await client.get("/console")).status_code == 200  # the client now holds the cookie
    assert (await client.get("/console/api/malls")).status_code == 200
    recognized = await client.post("/recognize", json={"photo_url": "http://x/p.jpg"})
    assert recognized.status_code == 200

    out = await client.post("/console/session/end", headers={"origin": "http://fn"})
    assert out.status_code == 303 and f"{KEY_COOKIE}=" in out.headers["set-cookie"]
    assert (await client.get("/console")).status_code == 401


async def test_sign_in_refuses_other_sites_other_media_types_and_open_redirects(orchestrator: Orchestrator) -> None:
    client = orchestrator.client
    form = {"content-type": "application/x-www-form-urlencoded"}
    elsewhere = await client.post("/console/session", content=f"key={APP_KEY}",
                                  headers={**form, "origin": "https://evil.example"})
    as_json = await client.post("/console/session", json={"key": APP_KEY})
    assert elsewhere.status_code == 403 and elsewhere.json()["field"] == "Origin"
    assert as_json.status_code == 415 and "set-cookie" not in as_json.headers
    for target in ("https://evil.example/console", "//evil.example/console", "/recognize", "javascript:x"):
        assert safe_next(target) == "/console", target
    assert safe_next("/console?photo=a.jpg&denied=1&mall=M") == "/console?photo=a.jpg&mall=M"


async def test_malls_come_from_the_staging_db(orchestrator: Orchestrator, staging_url: str) -> None:
    answer = await orchestrator.client.get("/console/api/malls", headers=orchestrator.headers)
    with psycopg.connect(staging_url) as conn:
        expected = conn.execute("SELECT mall_name, count(*) FROM raw_stores GROUP BY 1 ORDER BY 1").fetchall()
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    assert [(m["name"], m["stores"]) for m in answer.json()["malls"]] == expected
    assert len(expected) == 2


async def _recognized(orchestrator: Orchestrator) -> dict[str, Any]:
    response = await orchestrator.client.post("/recognize", headers=orchestrator.headers, json={
        "photo_url": "https://cdn.example.com/p.jpg", "user_mall": "Dubai Hills Mall"})
    assert response.status_code == 200
    runtime = await orchestrator.module.RUNTIME.get()
    await runtime.request_log.drain()
    body: dict[str, Any] = response.json()
    return body


async def test_past_request_shows_the_logged_row_its_products_and_feedback(orchestrator: Orchestrator) -> None:
    body = await _recognized(orchestrator)
    feedback = await orchestrator.client.post("/feedback", headers=orchestrator.headers, json={
        "request_id": body["request_id"], "item_id": 0, "verdict": "wrong_item", "comment": "not that jacket"})
    assert feedback.status_code == 200

    answer = await orchestrator.client.get(f"/console/api/request?id={body['request_id']}",
                                           headers=orchestrator.headers)
    row = answer.json()
    assert answer.status_code == 200 and row["id"] == body["request_id"]
    assert row["photo_url"] == "https://cdn.example.com/p.jpg" and row["user_mall"] == "Dubai Hills Mall"
    assert row["detected_items"][0]["bbox"] == body["items"][0]["bbox"]
    assert row["total_time_ms"] >= 0 and row["detection_time_ms"] is not None
    assert row["pgvector_top1_score"] == pytest.approx(0.93) and row["used_ximilar_booster"] is False
    assert row["candidates_after_availability"] == body["items"][0]["candidates_after_availability"]
    assert row["user_feedback"]["0"]["verdict"] == "wrong_item"
    shown = [(m["brand"], m["external_id"]) for m in row["final_matches"][0]["matches"]]
    products = {(p["brand"], p["external_id"]): p for p in row["products"]}
    assert shown and set(shown) <= set(products)
    assert products[("zara", "z1")]["price"] == 199.0 and products[("zara", "z1")]["name"]

    recent = (await orchestrator.client.get("/console/api/requests?limit=5", headers=orchestrator.headers)).json()
    assert [r["id"] for r in recent["requests"]] == [body["request_id"]]


@pytest.mark.parametrize(("query", "status", "field"), [
    ("id=not-a-uuid", 422, "id"), ("", 422, "id"),
    ("id=5f0c6e2a-1d1b-4c1e-9d0e-000000000001", 404, None),
])
async def test_past_request_bad_or_unknown_ids(orchestrator: Orchestrator, query: str, status: int,
                                               field: str | None) -> None:
    answer = await orchestrator.client.get(f"/console/api/request?{query}", headers=orchestrator.headers)
    assert answer.status_code == status and answer.json().get("field") == field


@pytest.mark.parametrize("limit", ["0", "101", "x", "-1"])
async def test_recent_requests_limit_is_bounded(orchestrator: Orchestrator, limit: str) -> None:
    answer = await orchestrator.client.get(f"/console/api/requests?limit={limit}", headers=orchestrator.headers)
    assert answer.status_code == 422 and answer.json()["field"] == "limit"


async def test_demo_photos_are_listed_and_served_by_plain_file_name_only(orchestrator: Orchestrator) -> None:
    listed = (await orchestrator.client.get("/console/api/demo-photos", headers=orchestrator.headers)).json()
    assert listed == {"photos": [{"name": DEMO_PHOTO, "mall": "Dubai Hills Mall"}]}  # the missing one is left out
    photo = await orchestrator.client.get(f"/console/api/demo-photo?name={DEMO_PHOTO}", headers=orchestrator.headers)
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg" and photo.content == jpeg()
    for name, status in (("../ground_truth.json", 422), ("a/b.jpg", 422), ("%2e%2e%2fx.jpg", 422),
                         ("ground_truth.json", 422), ("street-9.jpg", 404)):
        answer = await orchestrator.client.get(f"/console/api/demo-photo?name={name}", headers=orchestrator.headers)
        assert answer.status_code == status, name


async def test_a_database_that_is_not_open_is_a_503() -> None:
    with pytest.raises(StoreError, match="staging"):
        async with connection(None, "staging"):
            pass


def test_console_url_starts_a_run() -> None:
    assert console_url("http://127.0.0.1:8100/") == "http://127.0.0.1:8100/console"
    assert (console_url("http://h:1", "street-1.jpg", "Dubai Hills Mall")
            == "http://h:1/console?photo=street-1.jpg&mall=Dubai+Hills+Mall")
