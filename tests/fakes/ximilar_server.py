"""A local fake Ximilar speaking the real wire format on a real socket, with scriptable faults.

Endpoints (POST, `Authorization: Token <token>`, JSON):
- `tagging/fashion/v2/detect_tags`, `.../detect`, `.../tags`: `{"records": [...]}` (≤ 10) →
  `records[]` with `_status`, `_width`, `_height`, `_objects[]` / `_tags`. Detection answers
  come from registered ground truth (matched by the SHA-256 of the image bytes; the synthetic
  street photos' ground_truth.json can be loaded); otherwise one whole-image object. Tags come
  from a script keyed by image hash, else the image's mean colour named from the vocabulary.
- `similarity/fashion(-new)/v2/{insert,delete,allIDs,visualKNN}` with header `collection-id`:
  an in-memory collection. Descriptors are centred 16×16 RGB thumbnails (L2-normalised), the
  distance is cosine distance in [0, 2]; `filter` supports equality, `$in` and `$and`.

Faults (`fail_next(kind, times, path=...)`): "429", "500", "503", "401", "403", "slow",
"malformed" (200 with a non-JSON body), "shape" (200 JSON without the expected fields),
"status" (200 whose `status.code` is `code`), "record_status" (records' `_status.code`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unde.vocabulary import COLOURS

TOKEN = "fake-ximilar-token"
COLLECTION_ID = "fake-collection"

# Our vocabulary written the way Ximilar writes it, so the client's mapping is exercised.
_OBJECT_NAMES = {
    "top": ("Clothing/Upper", "Clothing", "Clothing/Tops"),
    "outerwear": ("Clothing/Upper", "Clothing", "Clothing/Jackets"),
    "dress": ("Clothing/Full", "Clothing", "Clothing/Dresses"),
    "bottom": ("Clothing/Lower", "Clothing", "Clothing/Pants"),
    "shoes": ("Footwear", "Footwear", "Footwear/Shoes"),
    "bag": ("Bags", "Bags", "Bags/Bags"),
}
_COLOUR_SPELLING = {"grey": "gray"}
_PATTERN_SPELLING = {"solid": "plain", "striped": "stripes", "checked": "checks",
                     "dotted": "dots", "printed": "print"}


@dataclass
class Fault:
    kind: str
    times: int
    path: str | None = None
    code: int = 500
    slow_s: float = 2.0


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class _State:
    faults: deque[Fault] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    collection: dict[str, tuple[dict[str, Any], np.ndarray]] = field(default_factory=dict)
    ground_truth: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    scripted_tags: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)


def descriptor(data: bytes) -> np.ndarray:
    """The fake's image descriptor: a centred, L2-normalised 16×16 RGB thumbnail."""
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((16, 16), Image.Resampling.BILINEAR)
    vector = np.asarray(image, dtype=np.float32).reshape(-1)
    vector = vector - vector.mean()
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        vector = np.zeros_like(vector)
        vector[0] = 1.0
        return vector
    return vector / norm


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ok() -> dict[str, Any]:
    return {"code": 200, "text": "OK", "request_id": "fake"}


def _mean_colour_name(data: bytes) -> str:
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32).reshape(-1, 3)
    mean = pixels.mean(axis=0)
    best = min(COLOURS, key=lambda c: float(np.sum((np.array(c.rgb) - mean) ** 2)))
    return _COLOUR_SPELLING.get(best.name, best.name)


def _ximilar_tags(item: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    _, _, category_tag = _OBJECT_NAMES[item["category"]]
    tags: dict[str, list[dict[str, Any]]] = {"Category": [{"name": category_tag, "prob": 0.95}]}
    if item.get("product_type"):
        tags["Subcategory"] = [{"name": item["product_type"].replace("_", " "), "prob": 0.9}]
    if item.get("colour"):
        tags["Color"] = [{"name": _COLOUR_SPELLING.get(item["colour"], item["colour"]),
                          "prob": 0.88}]
    if item.get("pattern"):
        tags["Design"] = [{"name": _PATTERN_SPELLING.get(item["pattern"], item["pattern"]),
                           "prob": 0.8}]
    if item.get("material"):
        tags["Material"] = [{"name": item["material"], "prob": 0.7}]
    return tags


def _matches(fields: dict[str, Any], filter_: dict[str, Any]) -> bool:
    for key, condition in filter_.items():
        if key == "$and":
            if not all(_matches(fields, part) for part in condition):
                return False
        elif isinstance(condition, dict) and "$in" in condition:
            if fields.get(key) not in condition["$in"]:
                return False
        elif fields.get(key) != condition:
            return False
    return True


class FakeXimilar:
    """The fake server; use as a context manager, read `base_url`."""

    def __init__(self, *, token: str = TOKEN, collection_id: str = COLLECTION_ID,
                 street_dir: Path | None = None) -> None:
        self.token = token
        self.collection_id = collection_id
        self.state = _State()
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        if street_dir is not None:
            self.load_ground_truth(street_dir)

    # ---- control -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeXimilar:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, kind: str, times: int = 1, *, path: str | None = None, code: int = 500,
                  slow_s: float = 2.0) -> None:
        """Answer the next `times` matching requests with a fault."""
        with self.lock:
            self.state.faults.append(Fault(kind, times, path, code, slow_s))

    def requests(self, path_suffix: str = "") -> list[Seen]:
        with self.lock:
            return [seen for seen in self.state.seen if seen.path.endswith(path_suffix)]

    def add_ground_truth(self, image: bytes, items: list[dict[str, Any]]) -> None:
        """Detection answer for these exact bytes (items: bbox, category, product_type, ...)."""
        with self.lock:
            self.state.ground_truth[sha(image)] = items

    def load_ground_truth(self, street_dir: Path) -> int:
        """Register every photo of a synthetic `ground_truth.json`; returns the count."""
        truth = json.loads((street_dir / "ground_truth.json").read_text())
        for photo in truth["photos"]:
            self.add_ground_truth((street_dir / photo["file"]).read_bytes(), photo["items"])
        return len(truth["photos"])

    def script_tags(self, image: bytes, item: dict[str, Any]) -> None:
        """Tags answer for these exact bytes, from an item in our vocabulary."""
        with self.lock:
            self.state.scripted_tags[sha(image)] = _ximilar_tags(item)

    def collection_ids(self) -> set[str]:
        with self.lock:
            return set(self.state.collection)

    def collection_fields(self, record_id: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.state.collection[record_id][0])

    # ---- serving -----------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.state.faults:
                if fault.path is None or path.endswith(fault.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.state.faults.remove(fault)
                    return fault
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                path = self.path.lstrip("/")
                with fake.lock:
                    fake.state.seen.append(Seen(path, dict(self.headers.items()), body,
                                                time.monotonic()))
                status, payload = fake._answer(path, dict(self.headers.items()), body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (time-out tests)

        return Handler

    def _answer(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        lower = {k.lower(): v for k, v in headers.items()}
        fault = self._take_fault(path)
        if fault is not None:
            answered = self._fault_answer(fault)
            if answered is not None:
                return answered
        if lower.get("authorization") != f"Token {self.token}":
            return 401, {"detail": "Invalid token."}
        if not isinstance(body, dict):
            return 400, {"detail": "JSON parse error"}
        try:
            status, payload = self._route(path, lower, body)
        except (KeyError, TypeError, ValueError, OSError) as exc:
            return 400, {"detail": f"bad request: {exc}"}
        if fault is not None and fault.kind == "record_status" and "records" in payload:
            for record in payload["records"]:
                record["_status"] = {"code": fault.code, "text": "Image cannot be processed"}
        return status, payload

    def _fault_answer(self, fault: Fault) -> tuple[int, Any] | None:
        if fault.kind in ("429", "500", "502", "503", "401", "403"):
            return int(fault.kind), {"detail": f"fake fault {fault.kind}"}
        if fault.kind == "slow":
            time.sleep(fault.slow_s)
            return None
        if fault.kind == "malformed":
            return 200, b"<html>upstream proxy error</html>"
        if fault.kind == "shape":
            return 200, {"unexpected": True, "status": _ok()}
        if fault.kind == "status":
            return 200, {"status": {"code": fault.code, "text": "fake status error"}}
        return None  # record_status: answered normally, then the records are marked

    def _route(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        if path.startswith("tagging/fashion/v2/"):
            operation = path.rsplit("/", 1)[-1]
            if operation not in ("detect_tags", "detect", "tags", "detect_tags_all"):
                return 404, {"detail": "Not found."}
            records = body["records"]
            if not 1 <= len(records) <= 10:
                return 400, {"detail": "1..10 records allowed"}
            answered = [self._tag_record(record, operation) for record in records]
            return 200, {"records": answered, "status": _ok(), "statistics": {"processing time": 0.01}}
        if path.startswith(("similarity/fashion-new/v2/", "similarity/fashion/v2/")):
            if headers.get("collection-id") != self.collection_id:
                return 400, {"detail": "collection not found"}
            return self._collection(path.rsplit("/", 1)[-1], body)
        return 404, {"detail": "Not found."}

    def _image_bytes(self, record: dict[str, Any]) -> bytes:
        if "_base64" in record:
            return base64.b64decode(record["_base64"])
        with urllib.request.urlopen(record["_url"], timeout=5) as response:
            return bytes(response.read())

    def _tag_record(self, record: dict[str, Any], operation: str) -> dict[str, Any]:
        data = self._image_bytes(record)
        width, height = Image.open(io.BytesIO(data)).size
        digest = sha(data)
        with self.lock:
            items = self.state.ground_truth.get(digest)
            scripted = self.state.scripted_tags.get(digest)
        answer: dict[str, Any] = {"_status": _ok(), "_width": width, "_height": height}
        if operation == "tags":
            answer["_tags"] = scripted or {"Color": [{"name": _mean_colour_name(data),
                                                       "prob": 0.6}]}
            return answer
        if items is None:
            items = [{"bbox": [0, 0, width, height], "category": "top",
                      "colour": None, "product_type": None}]
        objects: list[dict[str, Any]] = []
        for item in items:
            name, top, _ = _OBJECT_NAMES[item["category"]]
            x0, y0, x1, y1 = item["bbox"]
            objects.append({"name": name, "id": f"obj-{len(objects)}",
                            "Top Category": [{"id": f"top-{top}", "name": top, "prob": 0.97}],
                            "bound_box": [x0, y0, x1, y1],
                            "prob": 0.93, "area": (x1 - x0) * (y1 - y0) / (width * height),
                            "_tags": _ximilar_tags(item)})
        answer["_objects"] = objects
        return answer

    def _collection(self, operation: str, body: dict[str, Any]) -> tuple[int, Any]:
        if operation == "insert":
            out = []
            for record in body["records"][:10]:
                metadata = {k: v for k, v in record.items() if k not in ("_url", "_base64", "_file")}
                try:
                    vector = descriptor(self._image_bytes(record))
                except (OSError, ValueError) as exc:
                    out.append({"_id": record.get("_id"), "_status": {"code": 400, "text": str(exc)}})
                    continue
                with self.lock:
                    self.state.collection[str(record["_id"])] = (metadata, vector)
                out.append({"_id": record["_id"], "_status": _ok()})
            return 200, {"records": out, "status": _ok()}
        if operation == "delete":
            with self.lock:
                for record in body["records"]:
                    self.state.collection.pop(str(record["_id"]), None)
            return 200, {"records": [{"_id": r["_id"], "_status": _ok()} for r in body["records"]],
                         "status": _ok()}
        if operation == "allIDs":
            with self.lock:
                ids = sorted(self.state.collection)
            return 200, {"answer_records": [{"_id": i} for i in ids], "answer_count": len(ids),
                         "status": _ok()}
        if operation in ("visualKNN", "visualTagsKNN"):
            return 200, self._search(body)
        return 404, {"detail": "Not found."}

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        query = descriptor(self._image_bytes(body["query_record"]))
        k = int(body.get("k", 10))
        fields = body.get("fields_to_return") or ["_id"]
        filter_ = body.get("filter") or {}
        with self.lock:
            entries = [(rid, meta, vec) for rid, (meta, vec) in self.state.collection.items()
                       if _matches(meta, filter_)]
        scored = sorted(((float(np.clip(1.0 - vec @ query, 0.0, 2.0)), rid, meta)
                         for rid, meta, vec in entries), key=lambda t: (t[0], t[1]))[:k]
        records = [{"_id": rid, **{f: meta[f] for f in fields if f in meta}} for _, rid, meta in scored]
        return {"answer_records": records, "answer_distances": [d for d, _, _ in scored],
                "answer_count": len(records), "status": _ok()}
