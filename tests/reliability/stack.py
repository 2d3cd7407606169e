"""The system under test: the real functions as local processes, fake upstreams on real sockets.

`ReliabilityStack` migrates two fresh databases on an embedded PostgreSQL server, seeds the
synthetic mall, starts a fake Ximilar (detect/tag/search collection) and a fake Gemini as
loopback servers, starts every function with `devstack` at its own port offset (Ximilar and
Gemini configured through the real env variables, so the gateway and the reranker speak their
wire formats), indexes the catalog through the indexer function and fills the Ximilar
collection. Faults are then injected on the fakes, on the processes and on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from tests.fakes.gemini_server import API_KEY as GEMINI_KEY
from tests.fakes.gemini_server import FakeGemini, build_app, serve_in_thread
from tests.fakes.ximilar_server import FakeXimilar
from unde import devstack
from unde.commands.demo import index_via_function
from unde.db.embedded import DatabaseUrls, with_database
from unde.db.migrate import apply_migrations
from unde.settings import REPO_ROOT, VisionGatewaySettings, load_settings
from unde.synthetic.seed import seed_dataset

SQL_DIR = REPO_ROOT / "sql"
CLOSED_DB_URL = "postgresql://unde@127.0.0.1:9/unde_staging?connect_timeout=1"  # discard port: refused


class LatentXimilar(FakeXimilar):
    """The fake Ximilar with a network latency added to every answer (settable at run time)."""

    latency_s: float = 0.0

    def _answer(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        if self.latency_s:
            time.sleep(self.latency_s)
        return super()._answer(path, headers, body)


@dataclass
class StackConfig:
    """Where and how the stack runs; deadlines are shortened so a hang shows quickly."""

    admin_url: str
    data_dir: Path
    offset: int
    db_prefix: str = "rel"
    street_photos: int = 6
    soft_deadline_s: float = 8.0
    hard_deadline_s: float = 12.0
    ximilar_pilot_brands: int = 4
    index: bool = True  # False: pgvector stays empty and search answers from the Ximilar collection

    def env(self, fake_ximilar_url: str, fake_ximilar: FakeXimilar, fake_gemini_url: str) -> dict[str, str]:
        """Every function's extra environment (the same names the Helm chart sets)."""
        return {
            "XIMILAR_API_URL": fake_ximilar_url, "XIMILAR_API_TOKEN": fake_ximilar.token,
            "XIMILAR_COLLECTION_ID": fake_ximilar.collection_id, "XIMILAR_TIMEOUT_S": "2",
            "XIMILAR_MAX_RETRIES": "1", "XIMILAR_BREAKER_COOLDOWN_S": "3",
            "GEMINI_API_URL": fake_gemini_url, "GEMINI_API_KEY": GEMINI_KEY, "GEMINI_TIMEOUT_S": "2",
            "GEMINI_MAX_RETRIES": "1", "GEMINI_RETRY_DELAY_S": "0.1", "GEMINI_BREAKER_COOLDOWN_S": "3",
            "REQUEST_SOFT_DEADLINE_S": str(self.soft_deadline_s),
            "REQUEST_HARD_DEADLINE_S": str(self.hard_deadline_s),
            "RATE_LIMIT_PER_MINUTE": "1000000", "RATE_LIMIT_BURST": "100000",
            "RATE_LIMIT_ADDRESS_PER_MINUTE": "1000000", "RATE_LIMIT_ADDRESS_BURST": "100000",
            "INDEX_LEASE_S": "5", "LOG_LEVEL": "WARNING",
        }


@dataclass
class Photo:
    """One street photo the app sends, with the mall the shopper is in."""

    path: Path
    mall: str | None


@dataclass
class ReliabilityStack:
    """A running stack; build with `ReliabilityStack.running(config)`."""

    config: StackConfig
    urls: DatabaseUrls
    ximilar: LatentXimilar
    gemini: FakeGemini
    env: dict[str, str]
    photos: list[Photo] = field(default_factory=list)
    setup_s: dict[str, float] = field(default_factory=dict)

    # ---- life cycle ------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def running(cls, config: StackConfig) -> Iterator[ReliabilityStack]:
        """Databases, seed, fakes, functions, index, Ximilar collection; torn down on exit."""
        timings: dict[str, float] = {}
        started = time.monotonic()
        urls = fresh_databases(config.admin_url, config.db_prefix)
        seed_dataset(urls.staging, config.data_dir, scale="small", street_photos=config.street_photos,
                     render_images=False, image_base_url=devstack.url_of("image_server", config.offset))
        timings["databases+seed"] = time.monotonic() - started
        ximilar = LatentXimilar(street_dir=config.data_dir / "street")
        with ximilar, serve_gemini() as (gemini, gemini_url):
            env = config.env(ximilar.base_url, ximilar, gemini_url)
            stack = cls(config, urls, ximilar, gemini, env, load_photos(config.data_dir), timings)
            mark = time.monotonic()
            devstack.up(urls, config.data_dir, env, offset=config.offset)
            timings["functions up"] = time.monotonic() - mark
            try:
                mark = time.monotonic()
                if config.index:
                    stack.index_catalog()
                timings["index"] = time.monotonic() - mark
                mark = time.monotonic()
                stack.fill_ximilar_collection()
                timings["ximilar collection"] = time.monotonic() - mark
                yield stack
            finally:
                devstack.down(config.data_dir)

    def index_catalog(self) -> str:
        with httpx.Client(timeout=300.0) as client:
            return index_via_function(client, self.url("indexer"), batch=128,
                                      headers=devstack.internal_headers(self.config.data_dir))

    def fill_ximilar_collection(self) -> str:
        """`unde ximilar sync` against the fake for a few pilot brands (the fake fetches photos)."""
        from unde.commands.ximilar import sync_from_settings

        with psycopg.connect(self.urls.staging) as conn:
            brands = [row[0] for row in conn.execute(
                "SELECT DISTINCT brand FROM raw_products ORDER BY 1 LIMIT %s", (self.config.ximilar_pilot_brands,))]
        settings = load_settings(
            VisionGatewaySettings, ximilar_api_url=self.ximilar.base_url, ximilar_api_token=self.ximilar.token,
            ximilar_collection_id=self.ximilar.collection_id, ximilar_pilot_brands=brands,
            production_db_url=self.urls.production, staging_db_url=self.urls.staging,
            data_dir=self.config.data_dir)
        return asyncio.run(sync_from_settings(settings, dry_run=False)).summary()

    # ---- addressing and processes ----------------------------------------------------------

    def url(self, name: str) -> str:
        return devstack.url_of(name, self.config.offset)

    def restart(self, name: str, extra_env: Mapping[str, str] | None = None,
                sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop one function (SIGKILL unless told) and start it again, optionally with changed env."""
        devstack.restart(self.urls, self.config.data_dir, name, {**self.env, **(extra_env or {})},
                         self.config.offset, sig)

    def kill(self, name: str) -> None:
        devstack.stop_one(self.config.data_dir, name)

    def start(self, name: str, extra_env: Mapping[str, str] | None = None) -> None:
        devstack.start_one(self.urls, self.config.data_dir, name, {**self.env, **(extra_env or {})},
                           self.config.offset)

    def pids(self) -> dict[str, int]:
        return {state.name: state.pid for state in devstack.running(self.config.data_dir)}

    def clear_faults(self) -> None:
        with self.ximilar.lock:
            self.ximilar.state.faults.clear()
        self.gemini.faults.clear()
        self.ximilar.latency_s = 0.0
        self.gemini.latency_s = 0.0

    # ---- the log table ---------------------------------------------------------------------

    def row_counts(self, request_ids: list[str], wait_s: float = 30.0) -> dict[str, int]:
        """Rows per request id in `recognition_requests`, waiting (spool flush) until every id
        has one or `wait_s` passes. The table's primary key is the id, so a count is 0 or 1 —
        a duplicate write would be a conflict the writer swallows, never a second row."""
        deadline = time.monotonic() + wait_s
        counts: dict[str, int] = {}
        while True:
            with contextlib.suppress(psycopg.OperationalError), \
                    psycopg.connect(self.urls.production, connect_timeout=3) as conn:
                rows = conn.execute("SELECT id::text, count(*) FROM recognition_requests "
                                    "WHERE id = ANY(%s::uuid[]) GROUP BY id", (request_ids,)).fetchall()
                counts = {request_id: 0 for request_id in request_ids} | {r[0]: int(r[1]) for r in rows}
            if (counts and all(n == 1 for n in counts.values())) or time.monotonic() > deadline:
                return counts or {request_id: 0 for request_id in request_ids}
            time.sleep(0.5)


def fresh_databases(admin_url: str, prefix: str) -> DatabaseUrls:
    """Drop and create `<prefix>_production` / `<prefix>_staging`, migrated."""
    names = {"production": f"{prefix}_production", "staging": f"{prefix}_staging"}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    for target, name in names.items():
        apply_migrations(with_database(admin_url, name), target, SQL_DIR)  # type: ignore[arg-type]
    return DatabaseUrls(with_database(admin_url, names["production"]), with_database(admin_url, names["staging"]))


def load_photos(data_dir: Path) -> list[Photo]:
    truth: dict[str, Any] = json.loads((data_dir / "street" / "ground_truth.json").read_text())
    return [Photo(data_dir / "street" / p["file"], p.get("mall")) for p in truth["photos"]]


@contextlib.contextmanager
def serve_gemini() -> Iterator[tuple[FakeGemini, str]]:
    """The fake Gemini on a loopback port; yields (state, base URL)."""
    fake = FakeGemini(slow_s=4.0)
    with serve_in_thread(build_app(fake)) as base_url:
        yield fake, base_url
