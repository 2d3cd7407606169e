"""Links into the console (printed by `unde demo`)."""

from __future__ import annotations

from urllib.parse import urlencode


def console_url(orchestrator_url: str, photo: str | None = None, mall: str | None = None) -> str:
    """`/console`, starting a recognition of `photo` (an image URL or a demo photo's file name)
    in `mall` as soon as it opens when they are given."""
    query = urlencode({k: v for k, v in (("photo", photo), ("mall", mall)) if v})
    return f"{orchestrator_url.rstrip('/')}/console" + (f"?{query}" if query else "")
