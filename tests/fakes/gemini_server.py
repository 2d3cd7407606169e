"""A local fake Gemini REST API on a real loopback socket, with scriptable faults.

Speaks what the google-genai SDK sends: `POST /{v1|v1beta}/models/{model}:generateContent`,
header `x-goog-api-key`, camelCase JSON with `contents[].parts[]` holding `text` or
`inlineData {mimeType | mime_type, data}` (standard or URL-safe base64), and
`generationConfig {responseMimeType, responseSchema | responseJsonSchema}`. Answers
`candidates[].content.parts[].text` + `usageMetadata`, errors as Google's
`{"error": {"code", "message", "status"}}`.

Its judgement is honest but simple: with two images it compares their mean colours (score
= 1 − RGB distance / 200, floored at 0; same item when score ≥ 0.8); with one image it tags
context from brightness. A request whose response schema is an array (`"type": "ARRAY"`, as
the SDK sends `list[Model]`) is a batched compare: the first image is the crop, each later
image a candidate numbered by the "Candidate N" text part before it (else by position), and
the answer is one `{index, same_item, score, reason}` per candidate, as Gemini's structured
output gives it. Prompt tokens are counted as Gemini bills them: 258 per image plus about one
per four characters of text. Faults are consumed first-in first-out, one per request:
"429", "500", "503", "slow" (sleeps `slow_s` before answering), "malformed" (text that is
not JSON), "schema" (JSON that violates the schema), "empty" (no candidates), and for batched
calls "duplicate" (one index answered twice) and "missing" (the last candidate's verdict left
out). It counts requests and the most requests it ever had in flight at once.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from PIL import Image, ImageStat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

API_KEY = "fake-gemini-key"
FAULTS = frozenset({"429", "500", "503", "slow", "malformed", "schema", "empty", "duplicate", "missing"})
IMAGE_TOKENS = 258
LABEL = re.compile(r"candidate\s+(\d+)", re.IGNORECASE)


def _decode_b64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded)


def mean_colour(data: bytes) -> tuple[float, float, float]:
    """Mean RGB of an encoded image."""
    with Image.open(io.BytesIO(data)) as image:
        r, g, b = ImageStat.Stat(image.convert("RGB")).mean
    return r, g, b


def colour_similarity(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The fake's visual judgement: 1 − Euclidean RGB distance / 200, floored at 0."""
    distance = sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5
    return max(0.0, 1.0 - distance / 200.0)


@dataclass
class SeenRequest:
    """What one request carried (for tests that check the wire shape)."""

    path: str
    api_key: str | None
    body: dict[str, Any]
    images: list[bytes] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    labels: list[int | None] = field(default_factory=list)  # per image: the "Candidate N" before it

    @property
    def batched(self) -> bool:
        config = self.body.get("generationConfig", {})
        schema = config.get("responseSchema") or config.get("responseJsonSchema") or {}
        return str(schema.get("type", "")).upper() == "ARRAY"

    @property
    def prompt_tokens(self) -> int:
        return IMAGE_TOKENS * len(self.images) + sum(len(t) for t in self.texts) // 4 + 1


class FakeGemini:
    """The app's state: faults to play, counters, what was seen."""

    def __init__(self, latency_s: float = 0.0, slow_s: float = 5.0) -> None:
        self.latency_s = latency_s
        self.slow_s = slow_s
        self.faults: deque[str] = deque()
        self.requests: list[SeenRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def fail_next(self, *kinds: str) -> None:
        """Queue faults; each is played on one request, in order."""
        unknown = set(kinds) - FAULTS
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {sorted(FAULTS)}")
        self.faults.extend(kinds)

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0

    async def stats(self, request: Request) -> Response:
        """`GET /stats` (not Gemini's: for a caller in another process): calls, images, tokens."""
        with self._lock:
            seen = list(self.requests)
        return JSONResponse({"requests": len(seen), "images": sum(len(s.images) for s in seen),
                             "prompt_tokens": sum(s.prompt_tokens for s in seen),
                             "max_in_flight": self.max_in_flight})

    async def reset(self, request: Request) -> Response:
        """`POST /reset`: counters to zero, faults and latency from the JSON body."""
        body = await request.json()
        self.reset_counters()
        self.faults.clear()
        self.fail_next(*body.get("faults", []))
        self.latency_s = float(body.get("latency_s", self.latency_s))
        return JSONResponse({"ok": True})

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def _next_fault(self) -> str | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    async def generate(self, request: Request) -> Response:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._generate(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _generate(self, request: Request) -> Response:
        body = await request.json()
        seen = SeenRequest(request.url.path, request.headers.get("x-goog-api-key"), body)
        for content in body.get("contents", []):
            label: int | None = None
            for part in content.get("parts", []):
                inline = part.get("inlineData") or part.get("inline_data")
                if inline is not None:
                    seen.images.append(_decode_b64(inline["data"]))
                    seen.labels.append(label)
                    label = None
                elif "text" in part:
                    seen.texts.append(part["text"])
                    found = LABEL.search(part["text"])
                    label = int(found.group(1)) if found else None
        with self._lock:
            self.requests.append(seen)
        if seen.api_key != API_KEY:
            return _error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT")
        fault = self._next_fault()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if fault == "429":
            return _error(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED")
        if fault in ("500", "503"):
            return _error(int(fault), "An internal error has occurred.", "INTERNAL")
        if fault == "empty":
            return JSONResponse({"candidates": [], "usageMetadata": {"promptTokenCount": 5}})
        config = body.get("generationConfig", {})
        if config.get("responseMimeType") != "application/json":
            return _error(400, "responseMimeType must be application/json here", "INVALID_ARGUMENT")
        if not (config.get("responseSchema") or config.get("responseJsonSchema")):
            return _error(400, "a response schema is required here", "INVALID_ARGUMENT")
        text = self._batch_answer(seen, fault) if seen.batched else self._answer(seen, fault)
        output = len(text) // 4 + 1
        return JSONResponse({
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": seen.prompt_tokens, "candidatesTokenCount": output,
                              "totalTokenCount": seen.prompt_tokens + output},
            "modelVersion": request.path_params["model"],
        })

    def _batch_answer(self, seen: SeenRequest, fault: str | None) -> str:
        if fault == "malformed":
            return '[{"index": 1, "same_item": true, "score": 0.9, "reason": "cut off'
        crop = mean_colour(seen.images[0])
        verdicts: list[dict[str, Any]] = []
        for position, (image, label) in enumerate(zip(seen.images[1:], seen.labels[1:], strict=True), start=1):
            score = colour_similarity(crop, mean_colour(image))
            verdicts.append({"index": label if label is not None else position, "same_item": score >= 0.8,
                             "score": round(score, 4),
                             "reason": f"mean colours {'match' if score >= 0.8 else 'differ'}"})
        if fault == "schema" and verdicts:
            verdicts[0]["score"] = 7
        if fault == "duplicate" and len(verdicts) > 1:
            verdicts[-1]["index"] = verdicts[0]["index"]
        if fault == "missing" and verdicts:
            verdicts.pop()
        return json.dumps(verdicts)

    def _answer(self, seen: SeenRequest, fault: str | None) -> str:
        if fault == "malformed":
            return '{"same_item": true, "score": 0.9, "reason": "cut off'
        if len(seen.images) >= 2:
            score = colour_similarity(mean_colour(seen.images[0]), mean_colour(seen.images[1]))
            if fault == "schema":
                return json.dumps({"same_item": "maybe", "score": 7})
            return json.dumps({"same_item": score >= 0.8, "score": round(score, 4),
                               "reason": f"mean colours {'match' if score >= 0.8 else 'differ'}"})
        if fault == "schema":
            return json.dumps({"style": 3})
        brightness = sum(mean_colour(seen.images[0])) / 3 if seen.images else 128.0
        season = "autumn-winter" if brightness < 90 else "spring-summer" if brightness > 170 else None
        return json.dumps({"style": "casual", "occasion": "everyday", "brand_style": None,
                           "season": season})


def _error(code: int, message: str, status: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "status": status}},
                        status_code=code)


def build_app(fake: FakeGemini, photos: Path | None = None) -> Starlette:
    """The Starlette app serving the fake's routes (and `photos` under /img/, if given)."""
    routes: list[BaseRoute] = [
        Route(f"/{version}/models/{{model}}:generateContent", fake.generate, methods=["POST"])
        for version in ("v1beta", "v1")]
    routes += [Route("/stats", fake.stats), Route("/reset", fake.reset, methods=["POST"])]
    if photos is not None:
        routes.append(Mount("/img", app=StaticFiles(directory=photos)))
    return Starlette(routes=routes)


@contextmanager
def serve_in_thread(app: Callable[..., Any]) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1, port 0, in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


@contextmanager
def fake_gemini(latency_s: float = 0.0, slow_s: float = 5.0) -> Iterator[tuple[FakeGemini, str]]:
    """A running fake: yields (state, base_url)."""
    fake = FakeGemini(latency_s=latency_s, slow_s=slow_s)
    with serve_in_thread(build_app(fake)) as base_url:
        yield fake, base_url


def main() -> None:
    """`python -m tests.fakes.gemini_server PORT [PHOTO_DIR]`: serve the fake in this process
    (a benchmark measuring its caller's CPU runs it apart), prints the URL when ready."""
    import sys

    port = int(sys.argv[1])
    photos = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    fake = FakeGemini()
    config = uvicorn.Config(build_app(fake, photos), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")
    print(f"http://127.0.0.1:{port}", flush=True)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
