"""The QA console: `GET /console` on the orchestrator, off unless `CONSOLE_ENABLED`.

A static page (HTML, ES modules, CSS in `static/`, shipped as package data; no build step, no
CDN) that runs a recognition through the orchestrator's own `POST /recognize` event stream and
draws it as the spec's progressive timeline, and shows one past request read from
`recognition_requests`. It is guarded by the app key like `/recognize`: a browser signs in once
with the key (a form; the key is kept in an HttpOnly, SameSite=Strict cookie the orchestrator
reads like the `X-API-Key` header).
"""

from unde.console.routes import ConsolePools, console_routes

__all__ = ["ConsolePools", "console_routes"]
