"""Render the Helm chart with the real Helm binary (`helm template`, no cluster)."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.helm import helm, values_args
from unde.settings import REPO_ROOT

CHART_DIR = REPO_ROOT / "helm" / "unde-recognition"
CRDS_DIR = Path(__file__).parent / "crds"
RELEASE, NAMESPACE = "unde", "unde"
FUNCTIONS = ("orchestrator", "vision_gateway", "llm_reranker", "embedder", "indexer")
#: The oldest Kubernetes the guide supports (k3s v1.31); Chart.yaml's kubeVersion allows 1.28+.
KUBE_VERSION = "1.31.0"


def values_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART_DIR / name).read_text())
    return loaded


def render(values: dict[str, Any] | None = None, *, release: str = RELEASE,
           namespace: str = NAMESPACE, sets: tuple[str, ...] = (),
           files: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every object `helm template` renders for these values (hooks included), parsed.

    `files`: values files of the chart (`values-dev.yaml`), applied before `values`;
    `sets`: `--set` arguments, applied last (as skaffold passes them)."""
    with tempfile.TemporaryDirectory(prefix="unde-values-") as workdir:
        args = ["template", release, str(CHART_DIR), "--namespace", namespace,
                "--kube-version", KUBE_VERSION]
        for name in files:
            args += ["-f", str(CHART_DIR / name)]
        args += values_args(values, Path(workdir))
        for item in sets:
            args += ["--set", item]
        text = helm(*args)
    return [doc for doc in yaml.safe_load_all(text) if doc]


@cache
def render_profile(profile: str) -> tuple[dict[str, Any], ...]:
    """Rendered objects for `default`, `dev` (values-dev.yaml) or `production`."""
    files = () if profile == "default" else (f"values-{profile}.yaml",)
    return tuple(render(files=files))


def find(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str,
         name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
