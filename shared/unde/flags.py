"""Feature flags at run time: the spec's emergency rollback without a deploy.

The chart puts the flags and thresholds in one ConfigMap (`<release>-flags`) that every function
reads as env (`envFrom`). Changing a flag means: validate it against the settings model of every
function that reads it, patch the ConfigMap, and roll a new revision of exactly those Knative
Services (a changed `unde.life/flags-hash` annotation on the revision template makes Knative
create a revision whose pods read the new env, typically within a minute). The indexer's queue
consumer is a plain Deployment reading the same ConfigMap; it is rolled the same way. The hash
is the chart's (`flags_hash`: one rule for `helm upgrade` and this command), so a change
persisted in the chart's values makes the next upgrade a no-op for these fields.

Validation happens in two steps, both before any write: each value against its field (no
request at all), then the merged flag set against the whole model (cross-field rules such as
VISUAL_WEIGHT + SEMANTIC_WEIGHT = 1) once the current ConfigMap has been read.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

from unde.errors import ConfigError, UpstreamError
from unde.settings import (
    EmbedderSettings,
    IndexerSettings,
    LlmRerankerSettings,
    OrchestratorSettings,
    VisionGatewaySettings,
    describe_validation_error,
)

#: Which settings model each function loads at start-up (the function folder names).
FUNCTION_SETTINGS: dict[str, type[BaseSettings]] = {
    "orchestrator": OrchestratorSettings,
    "vision_gateway": VisionGatewaySettings,
    "llm_reranker": LlmRerankerSettings,
    "embedder": EmbedderSettings,
    "indexer": IndexerSettings,
}

#: The annotation on a revision template whose change rolls a new revision.
FLAGS_HASH_ANNOTATION = "unde.life/flags-hash"

#: Settings the chart sets per function in `env`, which wins over `envFrom`: a ConfigMap value
#: would have no effect, so the command refuses them.
WIRED_PER_FUNCTION = frozenset({
    "PORT", "DATA_DIR", "SQL_DIR", "MODEL_DIR",
    "VISION_GATEWAY_URL", "LLM_RERANKER_URL", "EMBEDDER_URL",
})

KNATIVE_GROUP, KNATIVE_VERSION, KNATIVE_SERVICES = "serving.knative.dev", "v1", "services"
MERGE_PATCH = "application/merge-patch+json"
#: The field manager of every write: a later server-side-apply `helm upgrade` (Helm 4) that
#: would set a field this command changed to another value names it in its conflict.
FIELD_MANAGER = "unde-flags"


def _is_secret(model: type[BaseSettings], name: str) -> bool:
    annotation = model.model_fields[name].annotation
    return annotation is SecretStr or "SecretStr" in repr(annotation)


def settable_flags() -> dict[str, tuple[str, ...]]:
    """Every flag name `unde flags set` accepts → the functions whose settings read it."""
    readers: dict[str, list[str]] = {}
    for function, model in FUNCTION_SETTINGS.items():
        for name in model.model_fields:
            env = name.upper()
            if env in WIRED_PER_FUNCTION or _is_secret(model, name):
                continue
            readers.setdefault(env, []).append(function)
    return {env: tuple(functions) for env, functions in sorted(readers.items())}


def readers_of(names: Iterable[str]) -> list[str]:
    """The functions that read any of `names`, in the fixed function order."""
    flags = settable_flags()
    wanted = {function for name in names for function in flags.get(name, ())}
    return [function for function in FUNCTION_SETTINGS if function in wanted]


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """`["SEARCH_BACKEND=ximilar", ...]` → `{"SEARCH_BACKEND": "ximilar"}` (names upper-cased)."""
    if not items:
        raise ConfigError("give at least one NAME=VALUE, e.g. SEARCH_BACKEND=ximilar")
    changes: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        if not sep or not name:
            raise ConfigError(f"{item!r}: expected NAME=VALUE, e.g. SEARCH_BACKEND=ximilar")
        if name in changes and changes[name] != value:
            raise ConfigError(f"{name} is given twice with different values")
        changes[name] = value.strip()
    return changes


def _check_names(names: Iterable[str]) -> None:
    flags = settable_flags()
    problems = []
    for name in names:
        if name in flags:
            continue
        if name in WIRED_PER_FUNCTION:
            problems.append(f"{name}: set per function by the chart, not a flag")
        elif any(name.lower() in model.model_fields and _is_secret(model, name.lower())
                 for model in FUNCTION_SETTINGS.values()):
            problems.append(f"{name}: a secret — it belongs in the Secret, never in the ConfigMap")
        else:
            close = difflib.get_close_matches(name, flags, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(f"{name}: no function reads this setting{hint}")
    if problems:
        raise ConfigError("unknown flag:\n  " + "\n  ".join(problems))


def _validate(model: type[BaseSettings], values: Mapping[str, str]) -> None:
    """Validate env-style values against a settings model without reading env or files."""
    fields = {name.lower(): value for name, value in values.items()
              if name.lower() in model.model_fields}
    model.model_validate(fields)


def validate_changes(changes: Mapping[str, str]) -> None:
    """Names and per-field values, before any request: unknown name or bad value → ConfigError."""
    _check_names(changes)
    problems: list[str] = []
    for function in readers_of(changes):
        model = FUNCTION_SETTINGS[function]
        try:
            _validate(model, changes)
        except ValidationError as exc:
            # Field errors only; cross-field rules need the current ConfigMap (validate_merged).
            own = [e for e in exc.errors() if e["loc"] and str(e["loc"][0]).upper() in changes]
            if own:
                lines = describe_validation_error(
                    ValidationError.from_exception_data(exc.title, own)  # type: ignore[arg-type]
                ).splitlines()[1:]
                problems.extend(line.strip() for line in lines if line.strip() not in problems)
    if problems:
        raise ConfigError("invalid flag value:\n  " + "\n  ".join(problems))


def validate_merged(current: Mapping[str, str], changes: Mapping[str, str]) -> dict[str, str]:
    """The flag set after the change, validated whole for every function that reads a change."""
    merged = {**current, **changes}
    for function in readers_of(changes):
        try:
            _validate(FUNCTION_SETTINGS[function], merged)
        except ValidationError as exc:
            raise ConfigError(
                f"{function} would not start with these flags: "
                + describe_validation_error(exc).removeprefix("invalid settings:")
            ) from exc
    return merged


def flag_readers() -> dict[str, list[str]]:
    """Function → the flags it reads: the chart's flag-readers.json (`unde flags readers`)."""
    readers: dict[str, list[str]] = {function: [] for function in FUNCTION_SETTINGS}
    for name, functions in settable_flags().items():
        for function in functions:
            readers[function].append(name)
    return readers


#: Go's encoding/json escapes these in a string besides `"` and `\\` (HTML-safe output).
_GO_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                    "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                    "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_json_string(text: str) -> str:
    out = []
    for char in text:
        escaped = _GO_JSON_ESCAPES.get(char)
        if escaped is None and char < " ":
            escaped = f"\\u{ord(char):04x}"
        out.append(escaped or char)
    return '"' + "".join(out) + '"'


def flags_hash(flags: Mapping[str, str], function: str) -> str:
    """The flags hash of `function`: it changes iff a flag value the function reads does.

    The ONE rule, also computed by the chart (`unde.flagsHash` in helm/unde-recognition's
    _helpers.tpl, which writes it at `helm install/upgrade`): the first 16 hex digits of the
    SHA-256 of the ConfigMap entries `function` reads, as the compact, key-sorted JSON that
    Helm's `toJson` (Go's encoding/json) writes. Equal hashes for equal flags mean a
    `helm upgrade` after a persisted `unde flags set` changes no revision template.
    """
    readers = set(flag_readers()[function])
    relevant = {name: flags[name] for name in sorted(flags) if name in readers}
    text = "{" + ",".join(f"{_go_json_string(name)}:{_go_json_string(str(value))}"
                          for name, value in relevant.items()) + "}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ReleaseNames:
    """Names of the chart's objects for one Helm release (see helm/unde-recognition/_helpers)."""

    release: str = "unde"
    namespace: str = "unde"

    @property
    def prefix(self) -> str:
        return self.release[:40].rstrip("-")

    @property
    def configmap(self) -> str:
        return f"{self.prefix}-flags"

    def service(self, function: str) -> str:
        return f"{self.prefix}-{function.replace('_', '-')}"

    @property
    def indexer_worker(self) -> str:
        return f"{self.service('indexer')}-worker"


@dataclass
class Rollout:
    """What `unde flags set` did."""

    changed: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)
    deployments: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.changed and not self.services:
            return "no change: every flag already has that value and every reader runs it"
        lines = [f"{name}: {old if old is not None else '(unset)'} -> {new}"
                 for name, (old, new) in self.changed.items()]
        lines.append("new revision requested: " + (", ".join(self.services) or "none"))
        if self.deployments:
            lines.append("restarted: " + ", ".join(self.deployments))
        lines.extend(f"skipped: {item}" for item in self.skipped)
        lines.append("persist the change in the chart values, or the next `helm upgrade` reverts it")
        return "\n".join(lines)


class FlagsCluster:
    """The flags ConfigMap and the functions' revision templates, through the Kubernetes API."""

    def __init__(self, api_client: Any, names: ReleaseNames, *, timeout_s: float = 10.0) -> None:
        from kubernetes import client

        self.names = names
        self.timeout_s = timeout_s
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, _request_timeout=self.timeout_s, **kwargs)
        except ApiException as exc:
            raise UpstreamError("kubernetes", f"{what}: HTTP {exc.status} {exc.reason}",
                                retryable=exc.status in (429, 500, 502, 503, 504)) from exc
        except HTTPError as exc:
            raise UpstreamError("kubernetes", f"{what}: {exc}", retryable=True) from exc

    def _raw(self, what: str, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        response = self._call(what, method, *args, _preload_content=False, **kwargs)
        body: dict[str, Any] = json.loads(response.data)
        return body

    def read_flags(self) -> dict[str, str]:
        """The flags ConfigMap's data."""
        name, namespace = self.names.configmap, self.names.namespace
        configmap = self._raw(f"read ConfigMap {namespace}/{name}",
                              self._core.read_namespaced_config_map, name, namespace)
        return dict(configmap.get("data") or {})

    def read_service(self, function: str) -> dict[str, Any]:
        """One function's Knative Service object."""
        name = self.names.service(function)
        service: dict[str, Any] = self._call(
            f"read Knative Service {self.names.namespace}/{name}",
            self._custom.get_namespaced_custom_object, KNATIVE_GROUP, KNATIVE_VERSION,
            self.names.namespace, KNATIVE_SERVICES, name)
        return service

    def _refuse_shadowed(self, changes: Mapping[str, str],
                         services: Mapping[str, dict[str, Any]]) -> None:
        """A name the chart sets in a container's own `env` would shadow the ConfigMap value."""
        problems: list[str] = []
        for function in readers_of(changes):
            containers = (services[function].get("spec", {}).get("template", {})
                          .get("spec", {}).get("containers") or [{}])
            own_env = {entry.get("name") for entry in containers[0].get("env") or []}
            problems.extend(f"{name}: {function} sets it in its own env (functions.{function}.env),"
                            " which wins over the ConfigMap; change it with helm upgrade"
                            for name in changes if name in own_env)
        if problems:
            raise ConfigError("flag would have no effect:\n  " + "\n  ".join(problems))

    def _patch_configmap(self, data: Mapping[str, str]) -> None:
        name, namespace = self.names.configmap, self.names.namespace
        self._raw(f"patch ConfigMap {namespace}/{name}", self._core.patch_namespaced_config_map,
                  name, namespace, {"data": dict(data)}, _content_type=MERGE_PATCH,
                  field_manager=FIELD_MANAGER)

    def _annotation_patch(self, digest: str) -> dict[str, Any]:
        return {"spec": {"template": {"metadata": {"annotations": {FLAGS_HASH_ANNOTATION: digest}}}}}

    def _roll_service(self, function: str, digest: str) -> str:
        name = self.names.service(function)
        self._call(f"patch Knative Service {self.names.namespace}/{name}",
                   self._custom.patch_namespaced_custom_object, KNATIVE_GROUP, KNATIVE_VERSION,
                   self.names.namespace, KNATIVE_SERVICES, name, self._annotation_patch(digest),
                   _content_type=MERGE_PATCH, field_manager=FIELD_MANAGER)
        return name

    def _roll_worker(self, digest: str) -> str | None:
        from kubernetes.client.exceptions import ApiException

        name = self.names.indexer_worker
        try:
            self._apps.patch_namespaced_deployment(
                name, self.names.namespace, self._annotation_patch(digest),
                _content_type=MERGE_PATCH, field_manager=FIELD_MANAGER, _request_timeout=self.timeout_s,
                _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:  # indexerWorker.enabled=false
                return None
            raise UpstreamError("kubernetes", f"patch Deployment {name}: HTTP {exc.status}") from exc
        return name

    def set_flags(self, changes: Mapping[str, str]) -> Rollout:
        """Validate, patch the ConfigMap, roll the readers whose revision hash is not the flags'.

        A reader is rolled when its live `unde.life/flags-hash` differs from the hash of the
        merged flags, so a repeated `set` is a no-op, and a `set` of the value the ConfigMap
        already has still rolls a reader left behind (e.g. by a Helm 3 upgrade, which reverts
        the ConfigMap but patches a Knative Service only from the old manifest to the new one).
        """
        validate_changes(changes)  # before any request
        current = self.read_flags()
        merged = validate_merged(current, changes)  # before any write
        readers = readers_of(changes)
        services = {function: self.read_service(function) for function in readers}
        self._refuse_shadowed(changes, services)
        rollout = Rollout(changed={name: (current.get(name), value) for name, value in changes.items()
                                   if current.get(name) != value})
        if rollout.changed:
            self._patch_configmap({name: new for name, (_, new) in rollout.changed.items()})
        for function in readers:
            digest = flags_hash(merged, function)
            live = (services[function].get("spec", {}).get("template", {}).get("metadata", {})
                    .get("annotations") or {}).get(FLAGS_HASH_ANNOTATION)
            if live == digest:
                continue
            rollout.services.append(self._roll_service(function, digest))
            if function == "indexer":
                worker = self._roll_worker(digest)
                if worker is None:
                    rollout.skipped.append(f"{self.names.indexer_worker} (not deployed)")
                else:
                    rollout.deployments.append(worker)
        return rollout

    def status(self) -> list[tuple[str, str, str]]:
        """Per function: (Service name, latest ready revision, rollout state)."""
        rows = []
        for function in FUNCTION_SETTINGS:
            service = self.read_service(function)
            status = service.get("status") or {}
            ready = str(status.get("latestReadyRevisionName") or "-")
            created = str(status.get("latestCreatedRevisionName") or "-")
            state = "ready" if created == ready else f"rolling out {created}"
            rows.append((self.names.service(function), ready, state))
        return rows


def kubernetes_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ApiClient from a kubeconfig file (or the in-cluster service account)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context,
                                             persist_config=False)
    except (ConfigException, OSError) as exc:
        if kubeconfig is not None:
            raise ConfigError(f"cannot use kubeconfig {kubeconfig}: {exc}") from exc
        try:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc2:
            raise ConfigError(f"no usable kubeconfig and not in a cluster: {exc}") from exc2
        return client.ApiClient(configuration)
