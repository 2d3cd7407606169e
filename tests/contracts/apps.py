"""Every function in-process with its local fakes, ready to be hit with arbitrary requests.

Credentials are configured (an internal token on the internal functions, an app key on the
orchestrator) and the client sends them, so requests reach the handlers; the rate limit is
raised out of the way. Upstreams: the orchestrator talks to the fake gateway/reranker
(`tests.fakes.pipeline_upstreams`), the gateway to the fake embedder (offline detect/tag, no
Ximilar), the reranker runs offline with no embedder listening (it degrades), the embedder and
the indexer run the local descriptor model. Databases are the real embedded PostgreSQL.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.fakes.pipeline_upstreams import GATEWAY, RERANKER, FakeItem, FakeUpstreams
from tests.function_apps import client_for, load_function
from tests.gateway.fake_embedder import FakeEmbedder
from tests.gateway.gateway_app import gateway
from unde.runtime import Lazy

FUNCTIONS = ("orchestrator", "vision_gateway", "llm_reranker", "embedder", "indexer")
INTERNAL_TOKEN = "contract-internal-token-3f9a"
APP_KEY = "contract-app-key-77c1"
ITEMS = [FakeItem("outerwear", [("zara", "z1", 0.93), ("mango", "m1", 0.8)], confident=True)]


@dataclass
class Target:
    """A running function: its client, module and the headers every request carries."""

    name: str
    client: httpx.AsyncClient
    module: ModuleType
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.module.OPENAPI
        return doc


def _common_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in {"UNDE_SECRETS_DIR": "/nonexistent", "DATA_DIR": str(tmp_path),
                       "INTERNAL_TOKEN": INTERNAL_TOKEN, "ALLOWED_IMAGE_HOSTS": "",
                       "IMAGE_MAX_BYTES": "300000", "IMAGE_MAX_PIXELS": "4000000",
                       "EMBED_PROVIDER": "local", "EMBED_MAX_BATCH": "4", "INTRA_OP_THREADS": "1",
                       "FETCH_TIMEOUT_S": "2", "LOG_LEVEL": "WARNING"}.items():
        monkeypatch.setenv(key, value)
    for key in ("XIMILAR_API_TOKEN", "XIMILAR_COLLECTION_ID", "GEMINI_API_KEY", "APP_API_KEYS"):
        monkeypatch.delenv(key, raising=False)


@asynccontextmanager
async def _orchestrator(monkeypatch: pytest.MonkeyPatch, production_url: str, staging_url: str,
                        env: Mapping[str, str], upstreams: FakeUpstreams | None = None
                        ) -> AsyncIterator[Target]:
    monkeypatch.setenv("PRODUCTION_DB_URL", production_url)
    monkeypatch.setenv("STAGING_DB_URL", staging_url)
    monkeypatch.setenv("VISION_GATEWAY_URL", GATEWAY)
    monkeypatch.setenv("LLM_RERANKER_URL", RERANKER)
    monkeypatch.setenv("APP_API_KEYS", APP_KEY)
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "1000000")
    monkeypatch.setenv("RATE_LIMIT_BURST", "1000000")
    monkeypatch.setenv("RATE_LIMIT_ADDRESS_PER_MINUTE", "1000000")
    monkeypatch.setenv("RATE_LIMIT_ADDRESS_BURST", "1000000")
    _apply(monkeypatch, env)
    app, module = load_function("orchestrator")
    fake = upstreams or FakeUpstreams(list(ITEMS))

    async def build() -> Any:
        return await module.Runtime(module.SETTINGS, http=fake.client()).open()

    setattr(module, "RUNTIME", Lazy(build))  # noqa: B010 (a function module, not typed)
    async with client_for(app) as client:
        yield Target("orchestrator", client, module, {"x-api-key": APP_KEY})
    if module.RUNTIME.ready:
        runtime = await module.RUNTIME.get()
        await runtime.request_log.drain()
        await runtime.production.close()
        await runtime.staging.close()


@asynccontextmanager
async def _gateway(monkeypatch: pytest.MonkeyPatch, production_url: str, staging_url: str,
                   env: Mapping[str, str]) -> AsyncIterator[Target]:
    with FakeEmbedder() as embedder:
        embedder.anchor((128, 128, 128), _unit(0))
        async with gateway(monkeypatch, production_url=production_url, staging_url=staging_url,
                           embedder_url=embedder.base_url, ximilar=None,
                           **{"internal_token": INTERNAL_TOKEN, "allowed_image_hosts": "",
                              "detect_provider": "local", "tag_provider": "local",
                              **{key.lower(): value for key, value in env.items()}}) as (client, module):
            yield Target("vision_gateway", client, module, _internal())


def _apply(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def _unit(axis: int) -> Any:
    import numpy as np

    vector = np.zeros(512, dtype=np.float32)
    vector[axis] = 1.0
    return vector


def _internal() -> dict[str, str]:
    return {"x-unde-internal-token": INTERNAL_TOKEN}


@asynccontextmanager
async def _reranker(monkeypatch: pytest.MonkeyPatch, production_url: str,
                    env: Mapping[str, str]) -> AsyncIterator[Target]:
    monkeypatch.setenv("RERANK_PROVIDER", "local")
    monkeypatch.setenv("PRODUCTION_DB_URL", production_url)
    monkeypatch.setenv("EMBEDDER_URL", "http://127.0.0.1:9")  # nothing listens: it degrades
    _apply(monkeypatch, env)
    app, module = load_function("llm_reranker")
    async with client_for(app) as client:
        yield Target("llm_reranker", client, module, _internal())
    if module.RUNTIME.ready:
        runtime = await module.RUNTIME.get()
        await runtime.http.aclose()
        if runtime.offline is not None:
            await runtime.offline.pool.close()


@asynccontextmanager
async def _embedder(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> AsyncIterator[Target]:
    _apply(monkeypatch, env)
    app, module = load_function("embedder")
    async with client_for(app) as client:
        yield Target("embedder", client, module, _internal())
    if module.RUNTIME.ready:
        await (await module.RUNTIME.get()).close()


@asynccontextmanager
async def _indexer(monkeypatch: pytest.MonkeyPatch, production_url: str, staging_url: str,
                   env: Mapping[str, str]) -> AsyncIterator[Target]:
    monkeypatch.setenv("PRODUCTION_DB_URL", production_url)
    monkeypatch.setenv("STAGING_DB_URL", staging_url)
    monkeypatch.setenv("INDEX_BATCH_SIZE", "4")
    _apply(monkeypatch, env)
    app, module = load_function("indexer")
    async with client_for(app) as client:
        yield Target("indexer", client, module, _internal())
    if module.INDEXER.ready:
        await (await module.INDEXER.get()).close()
        module.INDEXER.reset()
    sys.modules.pop("main", None)


@asynccontextmanager
async def running(name: str, monkeypatch: pytest.MonkeyPatch, *, production_url: str,
                  staging_url: str, tmp_path: Path,
                  env: Mapping[str, str] | None = None) -> AsyncIterator[Target]:
    """Function `name` running in-process with its fakes (see the module docstring).

    `env` overrides settings (e.g. ALLOWED_IMAGE_HOSTS, RERANK_PROVIDER=gemini)."""
    env = env or {}
    _common_env(monkeypatch, tmp_path)
    async with AsyncExitStack() as stack:
        if name == "orchestrator":
            target = await stack.enter_async_context(_orchestrator(monkeypatch, production_url,
                                                                   staging_url, env))
        elif name == "vision_gateway":
            target = await stack.enter_async_context(_gateway(monkeypatch, production_url, staging_url,
                                                               env))
        elif name == "llm_reranker":
            target = await stack.enter_async_context(_reranker(monkeypatch, production_url, env))
        elif name == "embedder":
            target = await stack.enter_async_context(_embedder(monkeypatch, env))
        elif name == "indexer":
            target = await stack.enter_async_context(_indexer(monkeypatch, production_url, staging_url,
                                                               env))
        else:
            raise ValueError(f"unknown function {name!r}")
        yield target
