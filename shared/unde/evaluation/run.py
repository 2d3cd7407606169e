"""Run labelled street photos through the local topology once per search-backend configuration.

For each configuration the dev stack (`unde.devstack`, one process per function) is restarted
with that `SEARCH_BACKEND`; every photo is POSTed to the orchestrator like the app does, and
the response plus its `recognition_requests` row are scored against the ground truth.

Detection is the local detector in every configuration (so only the search backend differs).
Configurations that use Ximilar (conditional, dual, ximilar) talk to the local fake Ximilar
(`tests/fakes/ximilar_server.py`, Ximilar's wire format, its collection filled by
`unde ximilar sync`): call rates and credits are the pipeline's real behaviour, quality is
not Ximilar's — the report labels those columns "simulated Ximilar (local fake)".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from unde import devstack
from unde.commands.recognize import post_photo
from unde.db.embedded import DatabaseUrls
from unde.errors import BadInput, UpstreamUnavailable
from unde.evaluation.report import SIMULATED, ConfigResult
from unde.pipeline.scorecard import Scorecard
from unde.settings import REPO_ROOT, VisionGatewaySettings, load_settings

XIMILAR_BACKENDS = frozenset({"conditional", "dual", "ximilar"})
BACKENDS = ("pgvector", "conditional", "dual", "ximilar")
RECORD_WAIT_S = 15.0
PORT_WAIT_S = 300.0
Log = Callable[[str], None]


@dataclass(slots=True)
class EvalPlan:
    """What to run: backends, photos, where the data and databases are."""

    backends: list[str]
    ground_truth: Path
    data_dir: Path
    urls: DatabaseUrls
    photos: int | None = None
    use_fake_ximilar: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)


def parse_backends(value: str) -> list[str]:
    """`pgvector,conditional,dual` → a list, each a known SEARCH_BACKEND."""
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if not names or unknown:
        raise BadInput(f"unknown backend(s) {unknown or value!r}; choose from {', '.join(BACKENDS)}",
                       field="backend")
    return list(dict.fromkeys(names))


def load_ground_truth(path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """(photo folder, photos) from a ground_truth.json file or the folder holding one."""
    file = path / "ground_truth.json" if path.is_dir() else path
    try:
        photos = json.loads(file.read_text())["photos"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"cannot read ground truth {file}: {exc}", field="ground_truth") from exc
    return file.parent, photos


def pick_photos(photos: list[dict[str, Any]], count: int | None) -> list[dict[str, Any]]:
    """The first `count` photos taking malls in turn (all photos when count is None)."""
    if count is None or count >= len(photos):
        return list(photos)
    by_mall: dict[str | None, list[dict[str, Any]]] = {}
    for photo in photos:
        by_mall.setdefault(photo.get("mall"), []).append(photo)
    picked: list[dict[str, Any]] = []
    while len(picked) < count:
        for queue in by_mall.values():
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return picked


def config_env(backend: str, fake_url: str | None, collection: str, token: str) -> dict[str, str]:
    """One configuration's environment for every function."""
    env = {"SEARCH_BACKEND": backend, "DETECT_PROVIDER": "local",
           "RATE_LIMIT_PER_MINUTE": "1000000", "RATE_LIMIT_BURST": "100000",
           "RATE_LIMIT_ADDRESS_PER_MINUTE": "1000000", "RATE_LIMIT_ADDRESS_BURST": "100000"}
    if backend in XIMILAR_BACKENDS and fake_url is not None:
        env.update({"XIMILAR_API_URL": fake_url, "XIMILAR_API_TOKEN": token,
                    "XIMILAR_COLLECTION_ID": collection, "TAG_PROVIDER": "ximilar"})
    else:
        env["TAG_PROVIDER"] = "local"
    return env


def stack_ports() -> tuple[int, ...]:
    return (devstack.IMAGE_PORT, *(spec.port for spec in devstack.FUNCTIONS))


def busy_ports() -> list[int]:
    """The dev stack's ports some process listens on."""
    busy = []
    for port in stack_ports():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((devstack.HOST, port))
            except OSError:
                busy.append(port)
    return busy


def wait_ports_free(timeout_s: float = PORT_WAIT_S, log: Log = print) -> None:
    """Wait for another dev stack (someone's `unde dev`/demo/test) to release the ports: its
    health checks would otherwise answer for ours."""
    deadline = time.monotonic() + timeout_s
    busy = busy_ports()
    if busy:
        log(f"    ports {busy} are held by another dev stack; waiting up to {timeout_s:.0f}s")
    while busy and time.monotonic() < deadline:
        time.sleep(2.0)
        busy = busy_ports()
    if busy:
        raise UpstreamUnavailable("dev stack", f"ports {busy} are in use by another process "
                                  "(another dev stack? stop it with `unde dev down`)")


def _listening_inodes(ports: tuple[int, ...]) -> dict[int, str]:
    inodes: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if fields[3] == "0A" and port in ports:
                    inodes[port] = fields[9]
    return inodes


def foreign_ports(states: list[devstack.ProcessState]) -> list[int] | None:
    """Ports whose listener is not in one of our processes' groups (None: cannot tell, no /proc)."""
    if not Path("/proc/net/tcp").exists():
        return None
    groups = {state.pid for state in states}
    ours: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(int(entry.name)) in groups:
                for fd in (entry / "fd").iterdir():
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        ours.add(target[8:-1])
    return [port for port, inode in _listening_inodes(stack_ports()).items() if inode not in ours]


@contextlib.contextmanager
def fake_ximilar() -> Iterator[Any]:
    """The local fake Ximilar (from the repository's test fakes), or None when absent."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from tests.fakes.ximilar_server import FakeXimilar
    except ImportError:
        yield None
        return
    with FakeXimilar() as fake:
        yield fake


def catalog_brands(staging_url: str) -> list[str]:
    with psycopg.connect(staging_url) as conn:
        return [row[0] for row in conn.execute("SELECT DISTINCT brand FROM raw_products ORDER BY 1")]


def fill_collection(fake: Any, plan: EvalPlan) -> str:
    """`unde ximilar sync` against the fake with every catalog brand as pilot (needs the image
    server up: the fake fetches each photo like Ximilar does)."""
    from unde.commands.ximilar import sync_from_settings

    settings = load_settings(
        VisionGatewaySettings, ximilar_api_url=fake.base_url, ximilar_api_token=fake.token,
        ximilar_collection_id=fake.collection_id, ximilar_pilot_brands=catalog_brands(plan.urls.staging),
        production_db_url=plan.urls.production, staging_db_url=plan.urls.staging, data_dir=plan.data_dir)
    return asyncio.run(sync_from_settings(settings, dry_run=False)).summary()


def require_index(production_url: str) -> int:
    """The number of indexed catalog images; an empty index is an error (nothing to search)."""
    with psycopg.connect(production_url) as conn:
        row = conn.execute("SELECT count(*) FROM sku_image_embeddings").fetchone()
    count = int(row[0]) if row else 0
    if count == 0:
        raise UpstreamUnavailable("index", "sku_image_embeddings is empty after indexing: see the indexer's "
                                  "dead jobs (SELECT * FROM index_jobs WHERE status = 'dead')")
    return count


def fetch_records(production_url: str, request_ids: list[str], wait_s: float = RECORD_WAIT_S) -> dict[str, Any]:
    """The requests' log rows (written in the background: wait until all are there or time out)."""
    deadline = time.monotonic() + wait_s
    rows: dict[str, Any] = {}
    with psycopg.connect(production_url, row_factory=psycopg.rows.dict_row) as conn:
        while True:
            found = conn.execute(
                "SELECT id::text AS id, search_results, used_ximilar_tagging, used_ximilar_booster "
                "FROM recognition_requests WHERE id = ANY(%s::uuid[])", (request_ids,)).fetchall()
            rows = {row["id"]: row for row in found}
            if len(rows) >= len(request_ids) or time.monotonic() > deadline:
                return rows
            time.sleep(0.3)


def recognize_all(photo_dir: Path, photos: list[dict[str, Any]], backend: str,
                  log: Log) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[str]]:
    """POST every photo to the running orchestrator; (truth, response) pairs and failures."""
    answered, failures = [], []
    orchestrator = devstack.BY_NAME["orchestrator"].url
    with httpx.Client(timeout=90.0) as client:
        for index, photo in enumerate(photos):
            response = post_photo(client, orchestrator, str(photo_dir / photo["file"]), photo.get("mall"),
                                  user_id=f"unde-eval-{backend}")
            if response.status_code != 200:
                failures.append(f"{photo['file']}: HTTP {response.status_code} {response.text[:200]}")
                continue
            answered.append((photo, response.json()))
            log(f"    [{backend}] {index + 1}/{len(photos)} {photo['file']}")
    return answered, failures


def run_config(plan: EvalPlan, backend: str, photo_dir: Path, photos: list[dict[str, Any]],
               fake: Any, before: Callable[[], None], log: Log) -> ConfigResult:
    """Restart the stack for one backend, recognize, score."""
    token = fake.token if fake is not None else ""
    collection = fake.collection_id if fake is not None else ""
    env = {**config_env(backend, fake.base_url if fake is not None else None, collection, token),
           **plan.extra_env}
    devstack.down(plan.data_dir)
    wait_ports_free(log=log)
    states = devstack.up(plan.urls, plan.data_dir, env)
    try:
        foreign = foreign_ports(states)
        if foreign:
            raise UpstreamUnavailable("dev stack", f"ports {foreign} answer from another process, not "
                                      "this run's functions (another dev stack started meanwhile)")
        before()
        answered, failures = recognize_all(photo_dir, photos, backend, log)
    finally:
        devstack.down(plan.data_dir)
    records = fetch_records(plan.urls.production, [body["request_id"] for _, body in answered])
    card = Scorecard()
    for truth, body in answered:
        card.add(truth, body, records.get(body["request_id"]))
    uses_ximilar = backend in XIMILAR_BACKENDS
    result = ConfigResult(backend, {k: v for k, v in env.items() if "TOKEN" not in k},
                          SIMULATED if uses_ximilar and fake is not None else "none", card, failures=failures)
    if len(records) < len(answered):
        result.notes.append(f"{len(answered) - len(records)} log rows missing: hit@20 and tag share "
                            "use the responses only for those")
    if uses_ximilar and fake is None:
        result.notes.append("no Ximilar available (the local fake is absent): Ximilar calls degrade; "
                            "see 'credits per photo if Ximilar' for the pipeline's own count of would-be calls")
    if not uses_ximilar:
        result.notes.append("tagging calls go to the local tagger (Ximilar tagging in production); "
                            "'requests calling Ximilar tagging' counts those would-be calls")
    return result


def run_eval(plan: EvalPlan, prepare: Callable[[], None], log: Log = print) -> list[ConfigResult]:
    """Every configuration in turn. `prepare` runs once with the first stack up (indexing needs
    the image server); the fake's collection is filled before the first Ximilar configuration."""
    photo_dir, all_photos = load_ground_truth(plan.ground_truth)
    photos = pick_photos(all_photos, plan.photos)
    if not photos:
        raise BadInput(f"no photos in {plan.ground_truth}", field="ground_truth")
    results: list[ConfigResult] = []
    state = {"prepared": False, "synced": False}
    stack = fake_ximilar() if plan.use_fake_ximilar else contextlib.nullcontext(None)
    with stack as fake:
        for backend in plan.backends:
            def before(backend: str = backend) -> None:
                if not state["prepared"]:
                    prepare()
                    require_index(plan.urls.production)
                    state["prepared"] = True
                if fake is not None and backend in XIMILAR_BACKENDS and not state["synced"]:
                    log("    filling the fake Ximilar collection: " + fill_collection(fake, plan))
                    state["synced"] = True

            log(f"  configuration SEARCH_BACKEND={backend}: {len(photos)} photos")
            results.append(run_config(plan, backend, photo_dir, photos, fake, before, log))
    return results
