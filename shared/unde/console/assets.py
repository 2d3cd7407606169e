"""The console's static files, read once from the package and served with strict headers."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from starlette.responses import Response

MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}

# Scripts, styles and API calls only from the orchestrator itself; catalog photos and photo
# URLs come from anywhere the catalog and the shopper point (S3, the local image server).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' http: https: data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # same-origin form posts keep their Origin header
    "cache-control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    name: str
    body: bytes
    media_type: str

    def response(self, status_code: int = 200) -> Response:
        return Response(self.body, status_code=status_code, media_type=self.media_type,
                        headers=SECURITY_HEADERS)


def load_assets() -> dict[str, Asset]:
    """Every file of `unde/console/static`, by file name."""
    folder = resources.files("unde.console").joinpath("static")
    assets = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in MEDIA_TYPES:
            assets[entry.name] = Asset(entry.name, entry.read_bytes(), MEDIA_TYPES[suffix])
    return assets
