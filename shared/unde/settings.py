"""Typed settings, one model per function, built once at start-up and passed down.

Sources, in order of precedence: keyword arguments → environment → the secrets directory
(a mounted Kubernetes Secret, one file per setting, `UNDE_SECRETS_DIR`). Nothing below this
module reads `os.environ`. A bad value fails start-up with a `ConfigError` naming the
variable and what it accepts.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from unde.errors import ConfigError

DEFAULT_SECRETS_DIR = "/var/run/secrets/unde"
REPO_ROOT = Path(__file__).resolve().parents[2]

SearchBackend = Literal["ximilar", "pgvector", "conditional", "dual"]
TaggingMode = Literal["always", "on_demand"]
ProviderChoice = Literal["auto", "ximilar", "local"]

_WINDOW_RE = re.compile(r"^\s*(\d{1,3})\s*h\s*$")
MAX_WINDOW_HOURS = 168


def parse_window(value: Any) -> timedelta:
    """Parse `AVAILABILITY_WINDOW` values such as ``24h`` or ``48h`` into a timedelta."""
    if isinstance(value, timedelta):
        return value
    match = _WINDOW_RE.match(str(value))
    hours = int(match.group(1)) if match else 0
    if not 1 <= hours <= MAX_WINDOW_HOURS:
        raise ValueError(
            f"must be '<n>h' with 1 <= n <= {MAX_WINDOW_HOURS}, e.g. 24h or 48h (got {value!r})"
        )
    return timedelta(hours=hours)


def format_window(window: timedelta) -> str:
    """The `<n>h` spelling of a window, as written in env and logs."""
    return f"{int(window.total_seconds() // 3600)}h"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class CommonSettings(BaseSettings):
    """Settings every function reads."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", validate_default=True, frozen=True
    )

    port: int = Field(8080, ge=1, le=65535, description="HTTP port (Knative sets PORT)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    data_dir: Path = Field(REPO_ROOT / ".data", description="local state: embedded DB, images")
    sql_dir: Path = Field(REPO_ROOT / "sql", description="versioned migrations")
    internal_token: SecretStr | None = Field(
        None, description="shared token for function-to-function calls"
    )
    allowed_image_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="hosts (host or host:port) image URLs may point at even if private",
    )
    image_max_bytes: int = Field(15 * 1024 * 1024, ge=1024)
    image_max_pixels: int = Field(40_000_000, ge=10_000)
    fetch_timeout_s: float = Field(5.0, gt=0, le=60)

    @field_validator("allowed_image_hosts", mode="before")
    @classmethod
    def _hosts_csv(cls, value: Any) -> Any:
        return _split_csv(value)


class DatabaseSettings(BaseSettings):
    """The two databases. Unset URLs mean the embedded local server under `data_dir`."""

    production_db_url: SecretStr | None = None
    staging_db_url: SecretStr | None = None
    db_pool_min: int = Field(1, ge=0, le=50)
    db_pool_max: int = Field(8, ge=1, le=200)
    db_statement_timeout_ms: int = Field(5000, ge=10, le=600_000)


class EmbeddingModelSettings(BaseSettings):
    """Which image model produces vectors, and how its sessions are tuned."""

    embed_provider: Literal["auto", "fashionclip", "efficientnet", "local"] = "auto"
    model_dir: Path | None = Field(None, description="FashionCLIP ONNX export directory")
    offline_model_dir: Path = Field(REPO_ROOT / ".data" / "models" / "efficientnet-lite0",
                                    description="EfficientNet-Lite0 ONNX export (built by `make model`)")
    intra_op_threads: int = Field(2, ge=1, le=64)
    inter_op_threads: int = Field(1, ge=1, le=16)
    embed_max_batch: int = Field(16, ge=1, le=256)


class OrchestratorSettings(CommonSettings, DatabaseSettings):
    """`orchestrator`: POST /recognize, /feedback."""

    vision_gateway_url: str = "http://127.0.0.1:8101"
    llm_reranker_url: str = "http://127.0.0.1:8102"
    tagging_mode: TaggingMode = "on_demand"
    availability_window: Annotated[timedelta, NoDecode] = timedelta(hours=24)
    min_candidates: int = Field(3, ge=0, le=50)
    confidence_high: float = Field(0.85, ge=0, le=1)
    confidence_medium: float = Field(0.50, ge=0, le=1)
    search_top_k: int = Field(50, ge=1, le=200)
    rerank_top_n: int = Field(20, ge=1, le=50)
    no_mall_top_n: int = Field(20, ge=1, le=50)
    fallback_limit: int = Field(10, ge=1, le=50)
    request_soft_deadline_s: float = Field(25.0, gt=0, le=120)
    request_hard_deadline_s: float = Field(30.0, gt=0, le=120)
    max_items: int = Field(8, ge=1, le=20)
    item_concurrency: int = Field(4, ge=1, le=20)
    log_spool_dir: Path | None = Field(None, description="default: DATA_DIR/spool")
    app_api_keys: SecretStr | None = Field(None, description="comma-separated API keys of the app")
    rate_limit_per_minute: float = Field(60.0, gt=0, description="per shopper, per process")
    rate_limit_burst: int = Field(20, ge=1)
    rate_limit_key_per_minute: float = Field(6000.0, gt=0, description="per app key, per process")
    rate_limit_key_burst: int = Field(600, ge=1)
    rate_limit_address_per_minute: float = Field(120.0, gt=0,
                                                 description="per client address, per process")
    rate_limit_address_burst: int = Field(40, ge=1)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CIDRs of proxies whose CLIENT_ADDRESS_HEADER is believed")
    client_address_header: str = Field("x-forwarded-for", min_length=1)
    console_enabled: bool = Field(False, description="serve the QA console at GET /console (unde.console)")

    @field_validator("availability_window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> timedelta:
        return parse_window(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _ordered(self) -> OrchestratorSettings:
        if self.confidence_medium > self.confidence_high:
            raise ValueError("CONFIDENCE_MEDIUM must not exceed CONFIDENCE_HIGH")
        if self.request_soft_deadline_s > self.request_hard_deadline_s:
            raise ValueError("REQUEST_SOFT_DEADLINE_S must not exceed REQUEST_HARD_DEADLINE_S")
        return self


class VisionGatewaySettings(CommonSettings, DatabaseSettings):
    """`vision_gateway` (ximilar-gw): POST /detect, /tag, /search."""

    embedder_url: str = "http://127.0.0.1:8103"
    embedder_timeout_s: float = Field(5.0, gt=0, le=60)
    search_backend: SearchBackend = "conditional"
    confidence_threshold: float = Field(0.80, ge=0, le=1)
    margin: float = Field(0.10, ge=0, le=1)
    ximilar_top_k: int = Field(30, ge=1, le=200)
    #: pgvector search (unde.retrieval.search; what each trades: k8s/README.md): IVFFlat lists
    #: probed first, SKUs the first stage chooses (at least 2 × top_k), and the filter size in
    #: SKUs up to which the SKU means are ranked exactly instead of through the index.
    search_ivf_probes: int = Field(20, ge=1, le=1000)
    search_sku_candidates: int = Field(250, ge=10, le=2000)
    search_exact_rows: int = Field(8000, ge=0, le=1_000_000)
    mall_brands_ttl_s: float = Field(300.0, ge=0)
    detect_provider: ProviderChoice = "auto"
    tag_provider: ProviderChoice = "auto"
    ximilar_api_url: str = "https://api.ximilar.com"
    ximilar_api_token: SecretStr | None = None
    ximilar_collection_id: str | None = None
    ximilar_timeout_s: float = Field(5.0, gt=0, le=60)
    ximilar_max_retries: int = Field(2, ge=0, le=10)
    ximilar_rate_per_s: float = Field(10.0, gt=0)
    ximilar_breaker_failures: int = Field(5, ge=1)
    ximilar_breaker_cooldown_s: float = Field(30.0, gt=0)
    ximilar_pilot_brands: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("ximilar_pilot_brands", mode="before")
    @classmethod
    def _brands_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @property
    def ximilar_configured(self) -> bool:
        """True when a Ximilar token is present (the `auto` providers then use Ximilar)."""
        return self.ximilar_api_token is not None


class LlmRerankerSettings(CommonSettings, DatabaseSettings):
    """`llm_reranker`: POST /tag, /rerank."""

    rerank_provider: Literal["auto", "gemini", "local"] = "auto"
    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_api_url: str | None = Field(None, description="override the Gemini base URL")
    gemini_timeout_s: float = Field(8.0, gt=0, le=120)
    gemini_max_retries: int = Field(2, ge=0, le=10, description="retries of one Gemini call")
    gemini_concurrency: int = Field(32, ge=1, le=128)
    visual_weight: float = Field(0.7, ge=0, le=1)
    semantic_weight: float = Field(0.3, ge=0, le=1)
    max_candidates: int = Field(20, ge=1, le=100)
    gemini_retry_delay_s: float = Field(0.5, ge=0, le=30, description="first retry delay")
    gemini_breaker_failures: int = Field(5, ge=1, description="consecutive failures that open it")
    gemini_breaker_cooldown_s: float = Field(30.0, gt=0)
    gemini_image_max_side: int = Field(768, ge=64, le=3072, description="images are downsized to this")
    embedder_url: str = Field("http://127.0.0.1:8103",
                              description="embeds the crop when /rerank gets no embedding")
    gemini_thinking_budget: int = Field(
        0, ge=-1, le=32768, description="Gemini thinking tokens; 0 off (fast), -1 model default")
    gemini_request_retries: int = Field(
        3, ge=0, le=20, description="retries all Gemini calls of one recognition share (per process)")
    rerank_batch: int = Field(10, ge=1, le=20, description="candidates per Gemini compare call; 1 = pairwise")
    rerank_photo_cache_mb: int = Field(
        64, ge=0, le=4096, description="prepared catalog JPEGs kept in memory (LRU; 0: off)")
    rerank_photo_cache_ttl_s: float = Field(
        6 * 3600.0, gt=0, description="a cached catalog photo without a content hash is fetched again after this")

    @model_validator(mode="after")
    def _weights(self) -> LlmRerankerSettings:
        if abs(self.visual_weight + self.semantic_weight - 1.0) > 1e-6:
            raise ValueError("VISUAL_WEIGHT + SEMANTIC_WEIGHT must equal 1.0")
        return self


class EmbedderSettings(CommonSettings, EmbeddingModelSettings):
    """`embedder`: POST /embed, latency-tuned."""


class IndexerSettings(CommonSettings, DatabaseSettings, EmbeddingModelSettings):
    """`indexer` (embed-batch): POST /embed_batch and the queue consumer, throughput-tuned."""

    intra_op_threads: int = Field(2, ge=1, le=64)
    inter_op_threads: int = Field(1, ge=1, le=16)
    index_batch_size: int = Field(32, ge=1, le=512)
    index_fetch_concurrency: int = Field(8, ge=1, le=64)
    index_lease_s: float = Field(300.0, gt=0)
    index_max_attempts: int = Field(5, ge=1, le=50)
    index_backoff_base_s: float = Field(5.0, ge=0)
    index_poll_interval_s: float = Field(2.0, gt=0)


S = TypeVar("S", bound=BaseSettings)


def _env_name(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]).upper() if loc else "settings"


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad setting: `NAME: what is wrong (got value)`."""
    lines = []
    for error in exc.errors():
        name = _env_name(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        got = error.get("input")
        suffix = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        lines.append(f"{name}: {message}{suffix}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build a settings model from overrides, env and the secrets dir; fail with ConfigError."""
    secrets_dir = os.environ.get("UNDE_SECRETS_DIR", DEFAULT_SECRETS_DIR)
    if Path(secrets_dir).is_dir():
        overrides.setdefault("_secrets_dir", secrets_dir)
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from exc


def secret_value(value: SecretStr | None) -> str | None:
    """The plain value of an optional secret (at the one place it is handed to a client)."""
    return value.get_secret_value() if value is not None else None


def masked(settings: BaseSettings) -> dict[str, Any]:
    """Settings as a JSON-able dict with every secret masked (for logs and /healthz)."""
    shown: dict[str, Any] = {}
    for name, value in settings:
        if isinstance(value, SecretStr):
            shown[name] = "***" if value.get_secret_value() else ""
        elif isinstance(value, timedelta):
            shown[name] = format_window(value)
        elif isinstance(value, Path):
            shown[name] = str(value)
        else:
            shown[name] = value
    return shown
