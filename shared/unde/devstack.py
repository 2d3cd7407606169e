"""The local topology: one process per function on its own port, as one Knative Service each.

`up` starts the embedded databases, the catalog image server and every function
(functions-framework, ASGI), wires their URLs through the environment exactly as the Helm
chart does in the cluster, and waits for every `/healthz`. State (pids, URLs, log files)
lives in `DATA_DIR/dev/`, so `down` and `status` work from another shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from unde.db.embedded import DatabaseUrls
from unde.errors import UpstreamUnavailable
from unde.http import INTERNAL_TOKEN_HEADER
from unde.settings import REPO_ROOT

HOST = "127.0.0.1"
IMAGE_PORT = 8090


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def shifted(self, offset: int) -> FunctionSpec:
        """The same function on `port + offset` (a second stack, e.g. tests, beside a dev one)."""
        return FunctionSpec(self.name, self.port + offset)


FUNCTIONS = (
    FunctionSpec("embedder", 8103),
    FunctionSpec("vision_gateway", 8101),
    FunctionSpec("llm_reranker", 8102),
    FunctionSpec("indexer", 8104),
    FunctionSpec("orchestrator", 8100),
)
BY_NAME = {spec.name: spec for spec in FUNCTIONS}
IMAGE_BASE_URL = f"http://{HOST}:{IMAGE_PORT}"


def url_of(name: str, offset: int = 0) -> str:
    """Where a function (or `image_server`) listens in a stack started with `offset`."""
    if name == "image_server":
        return f"http://{HOST}:{IMAGE_PORT + offset}"
    return BY_NAME[name].shifted(offset).url


@dataclass(slots=True)
class ProcessState:
    name: str
    pid: int
    url: str
    log: str


def state_dir(data_dir: Path) -> Path:
    return data_dir / "dev"


def shared_env(urls: DatabaseUrls, data_dir: Path, extra: Mapping[str, str] | None = None,
               offset: int = 0) -> dict[str, str]:
    """The environment every function gets: database URLs, peers' URLs, local allow-list."""
    env = {
        "PRODUCTION_DB_URL": urls.production,
        "STAGING_DB_URL": urls.staging,
        "DATA_DIR": str(data_dir),
        "EMBEDDER_URL": url_of("embedder", offset),
        "VISION_GATEWAY_URL": url_of("vision_gateway", offset),
        "LLM_RERANKER_URL": url_of("llm_reranker", offset),
        "ALLOWED_IMAGE_HOSTS": f"{HOST}:{IMAGE_PORT + offset}",
        "WORKERS": "1",
        "CONSOLE_ENABLED": "true",  # the orchestrator's QA console (unde.console); off in the chart
        "PYTHONPATH": str(REPO_ROOT),  # functions import their siblings as `functions.<name>.*`
    }
    env.update(extra or {})
    return env


def _spawn(name: str, argv: list[str], env: dict[str, str], logs: Path, url: str) -> ProcessState:
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            argv, env={**os.environ, **env}, stdout=log_file, stderr=subprocess.STDOUT,
            cwd=REPO_ROOT, start_new_session=True)
    return ProcessState(name, process.pid, url, str(log_path))


def function_argv(spec: FunctionSpec) -> list[str]:
    source = REPO_ROOT / "functions" / spec.name / "main.py"
    return [sys.executable, "-m", "functions_framework", "--target", "handle", "--source", str(source),
            "--asgi", "--host", HOST, "--port", str(spec.port)]


def image_server_argv(data_dir: Path, port: int = IMAGE_PORT) -> list[str]:
    return [sys.executable, "-m", "unde.synthetic", "serve", "--data-dir", str(data_dir),
            "--host", HOST, "--port", str(port)]


def wait_healthy(states: list[ProcessState], timeout_s: float = 90.0) -> None:
    """Wait until every process answers its health check; raise naming the ones that do not."""
    pending = {state.name: state for state in states}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while pending and time.monotonic() < deadline:
            for name, state in list(pending.items()):
                path = "/healthz" if name != "image_server" else "/"
                try:
                    if client.get(state.url + path).status_code < 500:
                        del pending[name]
                except httpx.HTTPError:
                    if not _alive(state.pid):
                        raise UpstreamUnavailable(name, f"exited during start-up; see {state.log}") from None
            time.sleep(0.3)
    if pending:
        raise UpstreamUnavailable(", ".join(pending), f"not healthy after {timeout_s:.0f}s; see logs in "
                                  f"{Path(next(iter(pending.values())).log).parent}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_state(data_dir: Path) -> list[ProcessState]:
    path = state_dir(data_dir) / "state.json"
    if not path.exists():
        return []
    return [ProcessState(**entry) for entry in json.loads(path.read_text())]


def save_state(data_dir: Path, states: list[ProcessState]) -> None:
    folder = state_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.json").write_text(json.dumps([asdict(s) for s in states], indent=2))


def running(data_dir: Path) -> list[ProcessState]:
    return [state for state in load_state(data_dir) if _alive(state.pid)]


def internal_token(data_dir: Path) -> str:
    """The stack's internal token (function-to-function auth, as in the cluster), made once."""
    path = state_dir(data_dir) / "internal_token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def internal_headers(data_dir: Path) -> dict[str, str]:
    """Headers a local tool needs to call an internal function (the indexer, the gateway)."""
    return {INTERNAL_TOKEN_HEADER: internal_token(data_dir)}


def up(urls: DatabaseUrls, data_dir: Path, extra_env: Mapping[str, str] | None = None,
       offset: int = 0) -> list[ProcessState]:
    """Start the image server and every function (stopping any previous stack in `data_dir`)."""
    down(data_dir)
    logs = state_dir(data_dir) / "logs"
    env = shared_env(urls, data_dir, {"INTERNAL_TOKEN": internal_token(data_dir), **(extra_env or {})}, offset)
    states = [_spawn("image_server", image_server_argv(data_dir, IMAGE_PORT + offset), env, logs,
                     url_of("image_server", offset))]
    for spec in (spec.shifted(offset) for spec in FUNCTIONS):
        states.append(_spawn(spec.name, function_argv(spec), {**env, "PORT": str(spec.port)}, logs, spec.url))
    save_state(data_dir, states)
    try:
        wait_healthy(states)
    except Exception:
        down(data_dir)
        raise
    return states


def down(data_dir: Path, grace_s: float = 5.0) -> list[str]:
    """Stop every process of the dev stack (process groups: gunicorn's workers included)."""
    stopped = []
    states = load_state(data_dir)
    for state in states:
        if _alive(state.pid):
            try:
                os.killpg(state.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            stopped.append(state.name)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(s.pid) for s in states):
        time.sleep(0.1)
    for state in states:
        if _alive(state.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGKILL)
    save_state(data_dir, [])
    return stopped


# ---- one function at a time (fault injection: kill a process mid-load, start it again) ------

def stop_one(data_dir: Path, name: str, sig: signal.Signals = signal.SIGKILL, grace_s: float = 5.0) -> bool:
    """Send `sig` to one process group of the stack (SIGKILL by default: a crash); True if it ran.

    Waits up to `grace_s` for it to exit; the state file keeps its entry until `start_one`.
    """
    state = next((s for s in load_state(data_dir) if s.name == name), None)
    if state is None or not _alive(state.pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(state.pid, sig)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _alive(state.pid):
        with contextlib.suppress(ChildProcessError):  # reap it when this process started it
            os.waitpid(state.pid, os.WNOHANG)
        time.sleep(0.05)
    return True


def start_one(urls: DatabaseUrls, data_dir: Path, name: str, extra_env: Mapping[str, str] | None = None,
              offset: int = 0, *, wait: bool = True) -> ProcessState:
    """(Re)start one function (or `image_server`) of a stack started by `up` with the same
    `extra_env` and `offset`, with `up`'s spawn logic; replaces its entry in the state file."""
    logs = state_dir(data_dir) / "logs"
    env = shared_env(urls, data_dir, {"INTERNAL_TOKEN": internal_token(data_dir), **(extra_env or {})}, offset)
    if name == "image_server":
        state = _spawn(name, image_server_argv(data_dir, IMAGE_PORT + offset), env, logs, url_of(name, offset))
    else:
        spec = BY_NAME[name].shifted(offset)
        state = _spawn(name, function_argv(spec), {**env, "PORT": str(spec.port)}, logs, spec.url)
    save_state(data_dir, [s for s in load_state(data_dir) if s.name != name] + [state])
    if wait:
        wait_healthy([state])
    return state


def restart(urls: DatabaseUrls, data_dir: Path, name: str, extra_env: Mapping[str, str] | None = None,
            offset: int = 0, sig: signal.Signals = signal.SIGKILL) -> ProcessState:
    """Kill one process of the stack (SIGKILL unless told) and start it again; waits for health."""
    stop_one(data_dir, name, sig)
    return start_one(urls, data_dir, name, extra_env, offset)
