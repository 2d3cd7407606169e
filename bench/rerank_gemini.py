"""What the Gemini reranker costs per photo, batched vs pairwise, photo cache on vs off.

Production shape, in this process: per garment the reranker prepares the crop, asks /tag's
question, then reranks the top 20 of the search order (descriptor cosines over the whole
catalog, as /search returns them) — `GeminiReranker` with the real `GeminiClient` (google-genai
SDK) and `PreparedPhotos`, catalog photos fetched over loopback HTTP. The fake Gemini
(tests/fakes/gemini_server.py, speaking generateContent with the batched array schema) and
the photo host run in another process, so `time.process_time()` here is the reranker's CPU
alone. Data: the synthetic world of bench/descriptor_quality.py (seed 7); cost figures on its
street photos with three garments, quality (top-1 = the true SKU ranked first) on every
in-catalog crop of the first photos. All variants run in the same run, on the same crops.

The fake judges by mean colour, identically whether asked pairwise or in a batch, so the
quality figures show that batching loses nothing in the reranker's own handling (numbering,
validation, fallbacks) — not how the real Gemini's judgement changes with ten photos in one
prompt; that needs `unde eval` with GEMINI_API_KEY set before RERANK_BATCH > 1 goes to
production.

Run: ``python -m bench.rerank_gemini [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image

from bench.common import figure, print_table
from bench.descriptor_quality import CACHE as DATA
from bench.rerank_quality import TOP_N, _catalog_metadata, _search_order, load_world
from unde.fetch import FetchPolicy, fetch_bytes
from unde.models.descriptor import DescriptorEmbedder
from unde.providers.gemini import GeminiClient, GeminiConfig
from unde.providers.gemini_policy import RetryBudgets
from unde.rerank.candidates import RerankCandidate
from unde.rerank.combine import Weights
from unde.rerank.gemini_rerank import GeminiReranker
from unde.rerank.photo_cache import PreparedPhotos, prepare_jpeg
from unde.settings import REPO_ROOT, LlmRerankerSettings

SEED = 7
FIELDS = LlmRerankerSettings.model_fields
DEFAULT_BATCH: int = FIELDS["rerank_batch"].default
CACHE_BYTES: int = FIELDS["rerank_photo_cache_mb"].default * 2**20
MAX_SIDE: int = FIELDS["gemini_image_max_side"].default
API_KEY = "fake-gemini-key"  # tests/fakes/gemini_server.API_KEY: the fake's, not a secret


@dataclass(frozen=True, slots=True)
class Garment:
    photo: str
    sku: str | None  # None: not in the catalog
    crop_jpeg: bytes
    candidates: list[RerankCandidate]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def fake_process() -> Iterator[str]:
    """The fake Gemini + the catalog photos (under /img/) in a child process; yields its URL."""
    port = _free_port()
    child = subprocess.Popen([sys.executable, "-m", "tests.fakes.gemini_server", str(port), str(DATA)],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = (child.stdout.readline() if child.stdout else "").strip()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/stats", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=10)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def garments(base_url: str, n_street: int) -> list[Garment]:
    """Every garment of the first `n_street` photos with its top-20 search candidates."""
    load_world(SEED, n_street)  # renders the world once (cached under bench/.cache)
    index = json.loads((DATA / "index.json").read_text())
    metadata = _catalog_metadata(SEED)
    urls: dict[str, list[str]] = {}
    for row in index["catalog"]:
        urls.setdefault(row["sku"], []).append(f"{base_url}/img/{row['file']}")
    embedder = DescriptorEmbedder()
    gallery_sku = [row["sku"] for row in index["catalog"]]
    gallery = embedder.embed([Image.open(DATA / row["file"]).convert("RGB") for row in index["catalog"]])
    out: list[Garment] = []
    for row in index["street"][:n_street]:
        photo = Image.open(DATA / row["file"]).convert("RGB")
        crops = [photo.crop(tuple(item["bbox"])) for item in row["items"]]
        vectors = embedder.embed(crops)
        for item, crop, vector in zip(row["items"], crops, vectors, strict=True):
            order = _search_order(vector, gallery, gallery_sku)[:TOP_N]
            candidates = [RerankCandidate(sku.split("/", 1)[0], sku.split("/", 1)[1], score, tuple(urls[sku]),
                                          metadata[sku]) for sku, score in order]
            sku = f"{item['brand']}/{item['external_id']}" if item["in_catalog"] else None
            out.append(Garment(row["file"], sku, _jpeg(crop), candidates))
    return out


@dataclass
class Pass:
    """One pass over the garments: CPU, Gemini's counters, top-1 hits."""

    photos: int
    cpu_s: float
    calls: int
    images: int
    prompt_tokens: int
    hits: int
    judged: int


async def run_pass(base_url: str, items: list[Garment], batch: int, photos: PreparedPhotos | None,
                   cache_bytes: int) -> tuple[Pass, PreparedPhotos]:
    """Rerank every garment as the reranker serves /tag + /rerank for it (a photo's garments at once)."""
    async with httpx.AsyncClient(timeout=30) as http:
        await http.post(f"{base_url}/reset", json={})

        policy = FetchPolicy.of([base_url.removeprefix("http://")], 10_000_000, 10.0)

        async def fetch(url: str) -> bytes:
            return await fetch_bytes(http, url, policy)

        photos = photos or PreparedPhotos(fetch, max_side=MAX_SIDE, max_pixels=40_000_000, max_bytes=cache_bytes)
        photos.fetch = fetch
        config = GeminiConfig(api_key=API_KEY, api_url=f"{base_url}/v1beta", timeout_s=20, concurrency=32)
        reranker = GeminiReranker(GeminiClient(config, http), photos, Weights(0.7, 0.3), batch_size=batch)
        budgets = RetryBudgets(config.request_retries)
        by_photo: dict[str, list[Garment]] = {}
        for item in items:
            by_photo.setdefault(item.photo, []).append(item)

        async def one(item: Garment) -> bool:
            budget = budgets.for_request(item.photo)
            crop = await asyncio.to_thread(prepare_jpeg, item.crop_jpeg, MAX_SIDE, 40_000_000, "image")
            tags, _ = await reranker.tag(crop, budget)
            ranked, _ = await reranker.rerank(crop, item.candidates, {**tags.to_json()}, budget)
            return item.sku is not None and ranked[0].sku_id == item.sku

        started = time.process_time()
        hits = 0
        for group in by_photo.values():
            hits += sum(await asyncio.gather(*(one(item) for item in group)))
        cpu_s = time.process_time() - started
        stats = (await http.get(f"{base_url}/stats")).json()
    judged = sum(1 for item in items if item.sku is not None)
    return Pass(len(by_photo), cpu_s, stats["requests"], stats["images"], stats["prompt_tokens"], hits,
                judged), photos


def measure(quick: bool) -> dict[str, Any]:
    n_street = 12 if quick else 40
    with fake_process() as url:
        items = garments(url, n_street)
        three = {g.photo for g in items if sum(1 for h in items if h.photo == g.photo) == 3}
        cost_set = [g for g in items if g.photo in three]

        def run(batch: int, cache_bytes: int, photos: PreparedPhotos | None = None,
                subset: list[Garment] | None = None) -> tuple[Pass, PreparedPhotos]:
            return asyncio.run(run_pass(url, subset if subset is not None else items, batch, photos, cache_bytes))

        pairwise, _ = run(1, CACHE_BYTES)
        batched, _ = run(DEFAULT_BATCH, CACHE_BYTES)
        nocache, _ = run(DEFAULT_BATCH, 0, subset=cost_set)
        cold, warm_cache = run(DEFAULT_BATCH, CACHE_BYTES, subset=cost_set)
        warm, _ = run(DEFAULT_BATCH, CACHE_BYTES, warm_cache, subset=cost_set)
        cost_pairwise, _ = run(1, CACHE_BYTES, subset=cost_set)
        cost_batched = cold
    return {"pairwise": pairwise, "batched": batched, "nocache": nocache, "cold": cold, "warm": warm,
            "cost_pairwise": cost_pairwise, "cost_batched": cost_batched, "three_photos": len(three),
            "cache_bytes": warm_cache.size_bytes, "cache_entries": len(warm_cache)}


def run(quick: bool) -> dict[str, dict[str, Any]]:
    m = measure(quick)
    pairs, batched = m["cost_pairwise"], m["cost_batched"]

    def per_photo(p: Pass, value: float) -> float:
        return round(value / max(p.photos, 1), 2)

    def top1(p: Pass) -> float:
        return round(p.hits / max(p.judged, 1), 4)

    batch_note = f"RERANK_BATCH={DEFAULT_BATCH}, {m['three_photos']} three-garment photos"
    figures = {
        "rerank_gemini_calls_per_photo": figure(per_photo(batched, batched.calls), f"calls/photo ({batch_note})",
                                                "RERANK_BATCH=1", per_photo(pairs, pairs.calls)),
        "rerank_gemini_calls_per_photo_batch1": figure(per_photo(pairs, pairs.calls), "calls/photo"),
        "rerank_images_per_photo": figure(per_photo(batched, batched.images), "images/photo", "RERANK_BATCH=1",
                                          per_photo(pairs, pairs.images)),
        "rerank_images_per_photo_batch1": figure(per_photo(pairs, pairs.images), "images/photo"),
        "rerank_prompt_tokens_per_photo": figure(per_photo(batched, batched.prompt_tokens),
                                                 "prompt tokens/photo (fake: 258/image + text/4)",
                                                 "RERANK_BATCH=1", per_photo(pairs, pairs.prompt_tokens)),
        "rerank_prompt_tokens_per_photo_batch1": figure(per_photo(pairs, pairs.prompt_tokens), "prompt tokens/photo"),
        "rerank_cpu_ms_per_photo": figure(per_photo(m["warm"], m["warm"].cpu_s * 1000),
                                          "reranker CPU ms/photo, photo cache warm", "photo cache off",
                                          per_photo(m["nocache"], m["nocache"].cpu_s * 1000)),
        "rerank_cpu_ms_per_photo_cold": figure(per_photo(m["cold"], m["cold"].cpu_s * 1000),
                                               "reranker CPU ms/photo, cache empty at the start of the pass"),
        "rerank_cpu_ms_per_photo_nocache": figure(per_photo(m["nocache"], m["nocache"].cpu_s * 1000),
                                                  "reranker CPU ms/photo, photo cache off"),
        "rerank_quality_top1": figure(top1(m["batched"]), f"top-1 on {m['batched'].judged} crops (fake Gemini)",
                                      "RERANK_BATCH=1", top1(m["pairwise"])),
        "rerank_quality_top1_batch1": figure(top1(m["pairwise"]), "top-1 (fake Gemini)"),
    }
    print_table(f"Gemini rerank per photo ({batch_note}; fake Gemini in another process)",
                [(name, entry["value"], entry["unit"]) for name, entry in figures.items()])
    print(f"  photo cache after the passes: {m['cache_entries']} JPEGs, {m['cache_bytes'] / 2**20:.1f} MiB")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
