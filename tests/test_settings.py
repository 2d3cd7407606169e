from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from unde.errors import ConfigError
from unde.settings import (
    EmbedderSettings,
    IndexerSettings,
    LlmRerankerSettings,
    OrchestratorSettings,
    VisionGatewaySettings,
    load_settings,
    masked,
    parse_window,
)


@pytest.fixture(autouse=True)
def _no_secrets_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UNDE_SECRETS_DIR", str(tmp_path / "absent"))


def test_defaults_are_the_spec_values() -> None:
    orchestrator = load_settings(OrchestratorSettings)
    gateway = load_settings(VisionGatewaySettings)
    reranker = load_settings(LlmRerankerSettings)

    assert orchestrator.tagging_mode == "on_demand"
    assert orchestrator.availability_window == timedelta(hours=24)
    assert orchestrator.min_candidates == 3
    assert (orchestrator.confidence_high, orchestrator.confidence_medium) == (0.85, 0.50)
    assert gateway.search_backend == "conditional"
    assert (gateway.confidence_threshold, gateway.margin) == (0.80, 0.10)
    assert orchestrator.search_top_k == 50
    assert reranker.gemini_model == "gemini-2.5-flash"
    assert (reranker.visual_weight, reranker.semantic_weight) == (0.7, 0.3)


def test_flags_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCH_BACKEND", "ximilar")
    monkeypatch.setenv("TAGGING_MODE", "always")
    monkeypatch.setenv("AVAILABILITY_WINDOW", "48h")
    monkeypatch.setenv("MIN_CANDIDATES", "5")
    monkeypatch.setenv("ALLOWED_IMAGE_HOSTS", "127.0.0.1:8090, cdn.example.com")

    gateway = load_settings(VisionGatewaySettings)
    orchestrator = load_settings(OrchestratorSettings)

    assert gateway.search_backend == "ximilar"
    assert gateway.allowed_image_hosts == ["127.0.0.1:8090", "cdn.example.com"]
    assert orchestrator.tagging_mode == "always"
    assert orchestrator.availability_window == timedelta(hours=48)
    assert orchestrator.min_candidates == 5


@pytest.mark.parametrize(
    ("cls", "name", "value", "expected"),
    [
        (VisionGatewaySettings, "SEARCH_BACKEND", "faiss",
         "SEARCH_BACKEND: Input should be 'ximilar', 'pgvector', 'conditional' or 'dual'"),
        (OrchestratorSettings, "TAGGING_MODE", "sometimes",
         "TAGGING_MODE: Input should be 'always' or 'on_demand'"),
        (OrchestratorSettings, "AVAILABILITY_WINDOW", "2d", "AVAILABILITY_WINDOW: must be '<n>h'"),
        (OrchestratorSettings, "MIN_CANDIDATES", "-1", "MIN_CANDIDATES:"),
        (VisionGatewaySettings, "CONFIDENCE_THRESHOLD", "1.5", "CONFIDENCE_THRESHOLD:"),
        (EmbedderSettings, "EMBED_PROVIDER", "clip", "EMBED_PROVIDER:"),
        (IndexerSettings, "INDEX_BATCH_SIZE", "zero", "INDEX_BATCH_SIZE:"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, cls: type, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(cls)
    assert expected in str(caught.value)
    assert repr(value) in str(caught.value)


def test_cross_field_rules_are_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIDENCE_MEDIUM", "0.9")
    with pytest.raises(ConfigError, match="CONFIDENCE_MEDIUM must not exceed CONFIDENCE_HIGH"):
        load_settings(OrchestratorSettings)
    monkeypatch.delenv("CONFIDENCE_MEDIUM")
    monkeypatch.setenv("VISUAL_WEIGHT", "0.8")
    with pytest.raises(ConfigError, match=r"VISUAL_WEIGHT \+ SEMANTIC_WEIGHT must equal 1.0"):
        load_settings(LlmRerankerSettings)


def test_secrets_come_from_a_mounted_secrets_dir_and_are_masked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "gemini_api_key").write_text("k-123-secret")
    (secrets / "production_db_url").write_text("postgresql://u:pw@db/unde")
    monkeypatch.setenv("UNDE_SECRETS_DIR", str(secrets))

    settings = load_settings(LlmRerankerSettings)

    assert settings.gemini_api_key is not None
    assert settings.gemini_api_key.get_secret_value() == "k-123-secret"
    shown = masked(settings)
    assert shown["gemini_api_key"] == "***"
    assert shown["production_db_url"] == "***"
    assert "k-123-secret" not in repr(settings) and "pw@" not in str(shown)


@pytest.mark.parametrize(("text", "hours"), [("24h", 24), ("48h", 48), (" 6h ", 6), ("168h", 168)])
def test_window_spellings(text: str, hours: int) -> None:
    assert parse_window(text) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["0h", "169h", "24", "24 hours", "h", "-1h"])
def test_bad_window_spellings(text: str) -> None:
    with pytest.raises(ValueError, match="<n>h"):
        parse_window(text)
