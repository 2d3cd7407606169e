"""Keeping secrets out of logs and stored records: URLs without signatures or credentials.

`redact_url` is what a stored record keeps of a photo URL (scheme, host, port, path).
`scrub` is the JSON log formatter's safety net over free text: any URL's query string
(pre-signed `X-Amz-Signature=…`, `token=…`) becomes `?<redacted>` and `user:password@` in any
URL is dropped, whoever logged it (our code, httpx's request log, an exception message).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s?#\"'<>]*)\?[^\s\"'<>#]*")
_URL_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^\s/@\"'<>]+@")
REDACTED = "<redacted>"


def redact_url(url: str) -> str:
    """What the log keeps of a photo URL: no query (signatures), no credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an unclosed "[" or a bad port: keep what can be read, never raise
        return scrub(url.split("?", 1)[0].split("#", 1)[0])
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def scrub(text: str) -> str:
    """`text` with every URL's query string and user:password@ removed."""
    if "://" not in text:
        return text
    text = _URL_USERINFO.sub(r"\1", text)
    return _URL_QUERY.sub(rf"\1?{REDACTED}", text)
