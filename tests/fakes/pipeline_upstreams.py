"""Fake vision gateway and LLM reranker speaking the contracts' JSON (functions/CONTRACTS.md).

An `httpx.MockTransport` handler, scriptable per test: what detect finds, what search returns
per garment, tag answers, rerank scores, failures and latencies. Shared by the pipeline tests
and the orchestrator benchmark (which sets the spec's latencies).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.function_apps import client_for
from unde.runtime import Lazy

GATEWAY = "http://gateway.test"
RERANKER = "http://reranker.test"


@dataclass
class FakeItem:
    """One garment the fake detector finds, and how search treats it."""

    category: str
    candidates: list[tuple[str, str, float]]  # (brand, external_id, score) in search order
    confident: bool = False
    type: str | None = None
    requery: list[tuple[str, str, float]] = field(default_factory=list)  # force_ximilar answer
    color: str | None = "khaki"
    search_degraded: list[str] = field(default_factory=list)  # what the first search reports


@dataclass
class Latencies:
    detect: float = 0.0
    search: float = 0.0
    ximilar_search: float = 0.0
    gemini_tag: float = 0.0
    ximilar_tag: float = 0.0
    rerank: float = 0.0


@dataclass
class FakeUpstreams:
    items: list[FakeItem]
    rerank_scores: dict[tuple[str, str], float] = field(default_factory=dict)
    latencies: Latencies = field(default_factory=Latencies)
    fail: set[str] = field(default_factory=set)  # e.g. {"gateway /search", "reranker /rerank"}
    calls: Counter[str] = field(default_factory=Counter)
    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    busy_s: float = 0.0  # CPU time spent inside the fakes (their own work, not the caller's)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport())

    async def handle(self, request: httpx.Request) -> httpx.Response:
        service = "gateway" if request.url.host == "gateway.test" else "reranker"
        key = f"{service} {request.url.path}"
        body = json.loads(request.content or b"{}")
        self.calls[key] += 1
        self.bodies.append((key, body))
        if key in self.fail:
            return httpx.Response(503, json={"error": "upstream_unavailable", "message": "down"})
        answer = getattr(self, "_" + key.replace(" /", "_"))
        await asyncio.sleep(self._latency(key, body))
        started = time.perf_counter()
        response: httpx.Response = answer(body)
        self.busy_s += time.perf_counter() - started
        return response

    def _latency(self, key: str, body: dict[str, Any]) -> float:
        lat = self.latencies
        if key == "gateway /search":
            _, item = self._item_of(body)
            ximilar = lat.ximilar_search if body.get("force_ximilar") or not item.confident else 0.0
            return lat.search + ximilar
        return {"gateway /detect": lat.detect, "gateway /tag": lat.ximilar_tag, "reranker /tag": lat.gemini_tag,
                "reranker /rerank": lat.rerank}[key]

    def _item_of(self, body: dict[str, Any]) -> tuple[int, FakeItem]:
        index = int(base64.b64decode(body["image"]["base64"]).decode().split(":")[1])
        return index, self.items[index]

    def _gateway_detect(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json={"items": [
            {"item_id": i, "bbox": [10, 10 + 100 * i, 200, 100 + 100 * i], "category": item.category,
             "type": item.type, "confidence": 0.9 - 0.1 * i,
             "crop": {"base64": base64.b64encode(f"crop:{i}".encode()).decode()}}
            for i, item in enumerate(self.items)], "width": 800, "height": 1000, "provider": "fake",
            "credits": 5})

    def _gateway_search(self, body: dict[str, Any]) -> httpx.Response:
        _, item = self._item_of(body)
        force = body.get("force_ximilar")
        rows = item.requery if force else item.candidates
        candidates = [{"brand": b, "external_id": e, "score": s, "source": "ximilar" if force else "pgvector",
                       "image_urls": [f"http://img/{b}/{e}/0.jpg", f"http://img/{b}/{e}/1.jpg"],
                       "metadata": {"name": f"{b} {e}", "price": 100.0, "currency": "AED",
                                    "category": item.category, "colour": item.color,
                                    "image_kinds": ["flat", "on_model"]}} for b, e, s in rows]
        top = [s for _, _, s in item.candidates]
        return httpx.Response(200, json={
            "candidates": candidates, "pgvector_confident": item.confident,
            "used_ximilar": bool(force) or not item.confident,
            "pgvector_top1_score": top[0] if top else None,
            "pgvector_margin": (top[0] - top[1]) if len(top) > 1 else None,
            "ximilar_top1_score": rows[0][2] if force and rows else None,
            "embedding": [0.0] * 4, "model_version": "fake-v1",
            "credits": 10 if force or not item.confident else 0,
            "degraded": [] if force else list(item.search_degraded)})

    def _gateway_tag(self, body: dict[str, Any]) -> httpx.Response:
        _, item = self._item_of(body)
        return httpx.Response(200, json={"type": item.type, "category": item.category, "color": item.color,
                                         "color_hex": "#8F8A55", "pattern": "solid", "material": None,
                                         "provider": "fake", "credits": 15})

    def _reranker_tag(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json={"style": "streetwear", "occasion": "casual", "brand_style": None,
                                         "season": "autumn", "unknown": ["brand_style"], "provider": "fake"})

    def _reranker_rerank(self, body: dict[str, Any]) -> httpx.Response:
        ranked = []
        for c in body["candidates"]:
            key = (c["brand"], c["external_id"])
            score = self.rerank_scores.get(key, c["score"])
            ranked.append({"brand": key[0], "external_id": key[1], "sku_id": "/".join(key),
                           "visual": score, "semantic": score, "score": score, "reason": "fake"})
        ranked.sort(key=lambda r: -r["score"])
        return httpx.Response(200, json={"ranked": ranked, "provider": "fake"})


@asynccontextmanager
async def orchestrator_on(module: Any, app: Any, fake: FakeUpstreams) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the orchestrator app whose runtime talks to `fake` instead of the network;
    its pools are closed afterwards."""
    async def build() -> Any:
        return await module.Runtime(module.SETTINGS, http=fake.client()).open()

    module.RUNTIME = Lazy(build)  # issue 17: the orchestrator has no build_runtime(overrides) yet
    try:
        async with client_for(app) as client:
            yield client
    finally:
        if module.RUNTIME.ready:
            runtime = await module.RUNTIME.get()
            await runtime.production.close()
            await runtime.staging.close()
