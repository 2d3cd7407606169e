"""Render the Helm chart offline (helm-python-sdk: Helm's Go SDK, no binary, no cluster)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import yaml

from unde.settings import REPO_ROOT

CHART_DIR = REPO_ROOT / "helm" / "unde-recognition"
SCHEMAS_DIR = Path(__file__).parent / "schemas"
RELEASE, NAMESPACE = "unde", "unde"
FUNCTIONS = ("orchestrator", "vision_gateway", "llm_reranker", "embedder", "indexer")


def values_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART_DIR / name).read_text())
    return loaded


def render(values: dict[str, Any] | None = None, *, release: str = RELEASE,
           namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every object the chart renders for these values (hooks included), parsed."""
    with helm_python.Chart.load(CHART_DIR) as chart:
        manifests = chart.render(values or {}, name=release, namespace=namespace)
    return [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]


@cache
def render_profile(profile: str) -> tuple[dict[str, Any], ...]:
    """Rendered objects for `default`, `dev` (values-dev.yaml) or `production`."""
    values = {} if profile == "default" else values_file(f"values-{profile}.yaml")
    return tuple(render(values))


def find(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str,
         name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
