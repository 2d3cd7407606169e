"""The console's routes on the orchestrator's router (`console_routes`; {} when disabled)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from unde.app_auth import KEY_COOKIE, AppKeys
from unde.console import queries
from unde.console.assets import Asset, load_assets
from unde.console.demo_photos import list_demo_photos, read_demo_photo
from unde.console.shapes import DemoPhotosResponse, MallsResponse, PastRequest, RecentRequests
from unde.errors import BadInput, NotFound, StoreError
from unde.http import Endpoint, media_type, read_body
from unde.rate_limit import AdmissionLimits
from unde.settings import OrchestratorSettings

PAGE = "index.html"
SIGN_IN_PAGE = "login.html"
OPEN_ASSETS = frozenset({"console.css", "login.js"})  # what the sign-in page itself needs
SIGN_IN_LIMIT_BYTES = 4096
DB_TIMEOUT_S = 3.0
RECENT_DEFAULT, RECENT_MAX = 20, 100


class ConsolePools(Protocol):
    """The orchestrator runtime's two pools (the console reads both)."""

    production: AsyncConnectionPool | None
    staging: AsyncConnectionPool | None


PoolSource = Callable[[], Awaitable[ConsolePools]]


def console_routes(settings: OrchestratorSettings, keys: AppKeys, limits: AdmissionLimits,
                   pools: PoolSource) -> dict[str, Endpoint]:
    """The console's endpoints when `CONSOLE_ENABLED`, else none (every console path is a 404)."""
    if not settings.console_enabled:
        return {}
    return Console(settings, keys, limits, pools).routes()


@asynccontextmanager
async def connection(pool: AsyncConnectionPool | None, name: str) -> AsyncIterator[AsyncConnection]:
    """A pooled connection; a database that is down or slow becomes a 503 naming it."""
    if pool is None:
        raise StoreError(f"the {name} database is not open")
    try:
        async with pool.connection(timeout=DB_TIMEOUT_S) as conn:
            yield conn
    except (psycopg.Error, PoolTimeout) as exc:
        raise StoreError(f"the {name} database did not answer: {exc}") from exc


def safe_next(raw: str) -> str:
    """Where to go after signing in: a console URL of this origin only (never an open redirect)."""
    parts = urlsplit(raw.strip())
    if parts.scheme or parts.netloc or parts.path != "/console" or raw.strip().startswith("//"):
        return "/console"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "denied"]
    return "/console" + (f"?{urlencode(query)}" if query else "")


def _json(model: BaseModel) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), headers={"cache-control": "no-store"})


def _uuid(raw: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(raw or "")
    except ValueError as exc:
        raise BadInput("id: must be a request id (a UUID)", field="id") from exc


def _limit(raw: str | None) -> int:
    if raw is None:
        return RECENT_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= RECENT_MAX:
        raise BadInput(f"limit: must be an integer from 1 to {RECENT_MAX}", field="limit")
    return int(raw)


class Console:
    """The console's endpoints over the orchestrator's keys, limits and pools."""

    def __init__(self, settings: OrchestratorSettings, keys: AppKeys, limits: AdmissionLimits,
                 pools: PoolSource) -> None:
        self.settings = settings
        self.keys = keys
        self.limits = limits
        self.pools = pools
        self.assets = load_assets()

    def routes(self) -> dict[str, Endpoint]:
        routes: dict[str, Endpoint] = {
            "GET /console": self.page,
            "POST /console/session": self.sign_in,
            "POST /console/session/end": self.sign_out,
            "GET /console/api/malls": self.malls,
            "GET /console/api/requests": self.recent,
            "GET /console/api/request": self.past_request,
            "GET /console/api/demo-photos": self.demo_photos,
            "GET /console/api/demo-photo": self.demo_photo,
        }
        for name, asset in self.assets.items():
            if not name.endswith(".html"):
                routes[f"GET /console/static/{name}"] = self._serve(asset, guarded=name not in OPEN_ASSETS)
        return routes

    def _signed_in(self, request: Request) -> bool:
        return not self.keys.enabled or self.keys.valid(self.keys.presented(request))

    def _serve(self, asset: Asset, *, guarded: bool) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            if guarded:
                self.keys.check(request)
            return asset.response()
        return endpoint

    async def page(self, request: Request) -> Response:
        """The console, or (401) the sign-in form when the browser holds no valid key."""
        if not self._signed_in(request):
            return self.assets[SIGN_IN_PAGE].response(401)
        return self.assets[PAGE].response()

    def _same_origin(self, request: Request) -> None:
        """Refuse a form posted from another site (the sign-in form is ours only)."""
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            raise BadInput("the console's forms must be posted from the console itself", field="Origin",
                           status_code=403)

    async def sign_in(self, request: Request) -> Response:
        """Check the key typed into the sign-in form; on success keep it in the key cookie."""
        self._same_origin(request)
        self.limits.check(request, app_key=None, user_id=None)  # per client address, as /recognize
        if media_type(request) != "application/x-www-form-urlencoded":
            raise BadInput("the sign-in form is application/x-www-form-urlencoded", field="Content-Type",
                           status_code=415)
        form = parse_qs((await read_body(request, SIGN_IN_LIMIT_BYTES)).decode("utf-8", "replace"),
                        max_num_fields=4)
        key, target = (form.get("key") or [""])[0].strip(), safe_next((form.get("next") or [""])[0])
        if self.keys.enabled and not self.keys.valid(key):
            return RedirectResponse(target + ("&" if "?" in target else "?") + "denied=1", status_code=303)
        response = RedirectResponse(target, status_code=303)
        if self.keys.enabled:
            secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
            response.set_cookie(KEY_COOKIE, key, httponly=True, samesite="strict", secure=secure, path="/")
        return response

    async def sign_out(self, request: Request) -> Response:
        self._same_origin(request)
        response = RedirectResponse("/console", status_code=303)
        response.delete_cookie(KEY_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def malls(self, request: Request) -> Response:
        self.keys.check(request)
        async with connection((await self.pools()).staging, "staging") as conn:
            return _json(MallsResponse(malls=await queries.malls(conn)))

    async def recent(self, request: Request) -> Response:
        self.keys.check(request)
        limit = _limit(request.query_params.get("limit"))
        async with connection((await self.pools()).production, "production") as conn:
            return _json(RecentRequests(requests=await queries.recent_requests(conn, limit)))

    async def past_request(self, request: Request) -> Response:
        """One logged request, with its final matches as the staging catalog describes them now."""
        self.keys.check(request)
        request_id = _uuid(request.query_params.get("id"))
        pools = await self.pools()
        async with connection(pools.production, "production") as conn:
            row = await queries.request_row(conn, request_id)
        if row is None:
            raise NotFound(f"no logged request with id {request_id} (a row is written just after the answer)")
        try:
            async with connection(pools.staging, "staging") as conn:
                found = await queries.products(conn, queries.matched_products(row.get("final_matches")))
        except StoreError:
            return _json(PastRequest(**row, products=[], products_unavailable=True))
        return _json(PastRequest(**row, products=found))

    async def demo_photos(self, request: Request) -> Response:
        self.keys.check(request)
        photos = await asyncio.to_thread(list_demo_photos, self.settings.data_dir)
        return _json(DemoPhotosResponse(photos=photos))

    async def demo_photo(self, request: Request) -> Response:
        self.keys.check(request)
        data, kind = await asyncio.to_thread(read_demo_photo, self.settings.data_dir,
                                             request.query_params.get("name", ""), self.settings.image_max_bytes)
        return Response(data, media_type=kind, headers={"cache-control": "private, max-age=3600",
                                                        "x-content-type-options": "nosniff"})
