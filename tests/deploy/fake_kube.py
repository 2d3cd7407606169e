"""A fake Kubernetes API server on loopback: the few endpoints `unde flags` uses, real JSON.

GET/PATCH ConfigMaps, Knative Services (serving.knative.dev/v1) and apps/v1 Deployments. PATCH
accepts the merge-patch content types the real API server accepts for a JSON object and answers
415/422 otherwise. Every request is recorded (method, path, content type, body, query string).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROUTES = {
    r"^/api/v1/namespaces/(?P<ns>[^/]+)/configmaps/(?P<name>[^/]+)$": "configmaps",
    r"^/apis/serving\.knative\.dev/v1/namespaces/(?P<ns>[^/]+)/services/(?P<name>[^/]+)$": "services",
    r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments/(?P<name>[^/]+)$": "deployments",
}
MERGE_TYPES = {"application/merge-patch+json", "application/strategic-merge-patch+json"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class Recorded:
    method: str
    path: str
    content_type: str | None
    body: Any
    query: str = ""


@dataclass
class FakeKubeApi:
    """Objects by (resource, namespace, name); `requests` lists what the client asked."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def add(self, obj: dict[str, Any]) -> None:
        resource = {"ConfigMap": "configmaps", "Service": "services", "Deployment": "deployments"}[obj["kind"]]
        meta = obj["metadata"]
        self.objects[(resource, meta["namespace"], meta["name"])] = obj

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        return self.objects[(resource, namespace, name)]

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}


def _handler(api: FakeKubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> tuple[str, str, str] | None:
            path = self.path.split("?")[0]
            for pattern, resource in ROUTES.items():
                match = re.match(pattern, path)
                if match:
                    return resource, match["ns"], match["name"]
            return None

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            content_type = (self.headers.get("Content-Type") or "").split(";")[0] or None
            path, _, query = self.path.partition("?")
            api.requests.append(Recorded(method, path, content_type, body, query))
            key = self._route()
            if key is None or key not in api.objects:
                self._send(404, _status(404, "NotFound", f"{self.path} not found"))
                return
            if method == "GET":
                self._send(200, api.objects[key])
                return
            if content_type not in MERGE_TYPES | {"application/json-patch+json"}:
                self._send(415, _status(415, "UnsupportedMediaType", f"{content_type}"))
                return
            if content_type == "application/json-patch+json" or not isinstance(body, dict):
                # A JSON (RFC 6902) patch must be a list of operations; an object is refused.
                self._send(422, _status(422, "Invalid", "json patch must be an array"))
                return
            api.objects[key] = merge_patch(api.objects[key], body)
            self._send(200, api.objects[key])

        def do_GET(self) -> None:
            self._handle("GET")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

    return Handler


@contextmanager
def fake_kube_api(objects: list[dict[str, Any]]) -> Iterator[FakeKubeApi]:
    """Serve `objects` on http://127.0.0.1:<port> for the duration of the block."""
    api = FakeKubeApi()
    for obj in objects:
        api.add(json.loads(json.dumps(obj)))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
