"""skaffold.yaml: every profile deploys by digest, and Helm waits long enough for the hooks."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART_DIR, FUNCTIONS
from unde.settings import REPO_ROOT

SKAFFOLD = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())


def _apply(config: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """The `add` operations skaffold's profiles use (RFC 6902, `-` appends), on a copy."""
    config = json.loads(json.dumps(config))
    for patch in patches:
        assert patch["op"] == "add", patch
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in patch["path"].split("/")[1:]]
        node: Any = config
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node.append(patch["value"]) if last == "-" else node.insert(int(last), patch["value"])
        else:
            node[last] = patch["value"]
    return config


def profile(name: str | None) -> dict[str, Any]:
    if name is None:
        return SKAFFOLD
    (chosen,) = [p for p in SKAFFOLD["profiles"] if p["name"] == name]
    return _apply(SKAFFOLD, chosen.get("patches", []))


def _seconds(duration: str) -> int:
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, duration
    hours, minutes, seconds = (int(g or 0) for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


@pytest.mark.parametrize("name", [None, "dev", "production"])
def test_every_profile_deploys_every_image_by_digest(name: str | None) -> None:
    (release,) = profile(name)["deploy"]["helm"]["releases"]
    templates = release["setValueTemplates"]
    for function in FUNCTIONS:
        artifact = "unde_" + function
        assert templates[f"functions.{function}.image.digest"] == f"{{{{.IMAGE_DIGEST_{artifact}}}}}"
        assert templates[f"functions.{function}.image.tag"] == f"{{{{.IMAGE_TAG_{artifact}}}}}"
    assert profile(name)["build"]["local"]["push"] is True  # a pushed image always has a digest


def _migration_deadline() -> tuple[int, int]:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    cap = schema["properties"]["migrations"]["properties"]["activeDeadlineSeconds"]["maximum"]
    return values["migrations"]["activeDeadlineSeconds"], cap


@pytest.mark.parametrize("command", ["install", "upgrade"])
def test_helm_waits_longer_than_the_migration_job_may_run(command: str) -> None:
    """Helm gives up on a hook Job after --timeout (5m by default); the Job may run 600 s."""
    flags = SKAFFOLD["deploy"]["helm"]["flags"][command]
    timeout = _seconds(flags[flags.index("--timeout") + 1])
    deadline, cap = _migration_deadline()
    assert deadline <= cap < timeout


def test_guide_passes_the_same_timeout_to_every_helm_install() -> None:
    guide = (REPO_ROOT / "k8s" / "README.md").read_text()
    commands = re.findall(r"^helm (?:upgrade --install|install|upgrade) unde .*?(?<!\\)$", guide,
                          flags=re.M | re.S)
    assert commands, "k8s/README.md shows no helm install of the chart"
    expected = SKAFFOLD["deploy"]["helm"]["flags"]["install"]
    for command in commands:
        found = re.search(r"--timeout[ =](\S+)", command)
        assert found, command
        assert _seconds(found.group(1)) == _seconds(expected[expected.index("--timeout") + 1])
