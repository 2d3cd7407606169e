"""`unde flags`: validation before any request, ConfigMap patch, new revisions of the readers only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART_DIR, FUNCTIONS, find, render, render_profile
from tests.deploy.fake_kube import FakeKubeApi, fake_kube_api
from unde.cli import main
from unde.errors import ConfigError
from unde.flags import (
    FIELD_MANAGER,
    FLAGS_HASH_ANNOTATION,
    flag_readers,
    flags_hash,
    parse_assignments,
    readers_of,
    settable_flags,
    validate_changes,
)

NS = "unde"


def cluster_objects() -> list[dict[str, Any]]:
    """What `helm install` of the default values creates, plus the status Knative would add."""
    docs = render_profile("default")
    objects = [*find(docs, "ConfigMap"), *find(docs, "Deployment")]
    for service in find(docs, "Service"):
        service = {**service, "status": {"latestReadyRevisionName": f"{service['metadata']['name']}-00001",
                                         "latestCreatedRevisionName": f"{service['metadata']['name']}-00001"}}
        objects.append(service)
    return objects


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[FakeKubeApi, Path]]:
    with fake_kube_api(cluster_objects()) as api:
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                  "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
                  "users": [{"name": "ops", "user": {"token": "test-token"}}],
                  "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "ops"}}]}
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        yield api, path


def revision_hash(api: FakeKubeApi, service: str) -> str:
    annotations = api.get("services", NS, service)["spec"]["template"]["metadata"]["annotations"]
    return str(annotations[FLAGS_HASH_ANNOTATION])


def all_hashes(api: FakeKubeApi) -> dict[str, str]:
    names = ["unde-orchestrator", "unde-vision-gateway", "unde-llm-reranker", "unde-embedder", "unde-indexer"]
    hashes = {name: revision_hash(api, name) for name in names}
    worker = api.get("deployments", NS, "unde-indexer-worker")
    hashes["worker"] = worker["spec"]["template"]["metadata"]["annotations"][FLAGS_HASH_ANNOTATION]
    return hashes


def run(kubeconfig: Path, *args: str) -> int:
    return main(["flags", *args, "--kubeconfig", str(kubeconfig), "-n", NS])


# --- validation, no cluster -------------------------------------------------------------------

def test_parse_assignments() -> None:
    assert parse_assignments(["search_backend=ximilar", "MIN_CANDIDATES = 5"]) == {
        "SEARCH_BACKEND": "ximilar", "MIN_CANDIDATES": "5"}
    for bad in (["SEARCH_BACKEND"], ["=x"], []):
        with pytest.raises(ConfigError):
            parse_assignments(bad)
    with pytest.raises(ConfigError, match="twice"):
        parse_assignments(["MARGIN=0.1", "MARGIN=0.2"])


@pytest.mark.parametrize(("changes", "message"), [
    ({"SEARCH_BACKEND": "milvus"}, "SEARCH_BACKEND"),
    ({"TAGGING_MODE": "sometimes"}, "TAGGING_MODE"),
    ({"AVAILABILITY_WINDOW": "2d"}, "AVAILABILITY_WINDOW"),
    ({"MIN_CANDIDATES": "many"}, "MIN_CANDIDATES"),
    ({"CONFIDENCE_HIGH": "1.5"}, "CONFIDENCE_HIGH"),
    ({"SEARCH_BACKND": "ximilar"}, "did you mean SEARCH_BACKEND"),
    ({"GEMINI_API_KEY": "x"}, "secret"),
    ({"EMBEDDER_URL": "http://x"}, "per function"),
])
def test_bad_names_and_values_are_refused(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_changes(changes)


def test_readers_follow_the_settings_models() -> None:
    flags = settable_flags()
    assert flags["SEARCH_BACKEND"] == ("vision_gateway",)
    assert flags["TAGGING_MODE"] == ("orchestrator",)
    assert set(flags["LOG_LEVEL"]) == {"orchestrator", "vision_gateway", "llm_reranker", "embedder", "indexer"}
    assert "PRODUCTION_DB_URL" not in flags and "INTERNAL_TOKEN" not in flags
    assert readers_of(["AVAILABILITY_WINDOW", "SEARCH_BACKEND"]) == ["orchestrator", "vision_gateway"]


def test_flags_hash_changes_only_with_the_flags_a_function_reads() -> None:
    base = {"SEARCH_BACKEND": "conditional", "TAGGING_MODE": "on_demand"}
    changed = {**base, "SEARCH_BACKEND": "ximilar"}
    assert flags_hash(base, "vision_gateway") != flags_hash(changed, "vision_gateway")
    assert flags_hash(base, "orchestrator") == flags_hash(changed, "orchestrator")


def test_chart_ships_the_readers_the_settings_models_define() -> None:
    """flag-readers.json is generated (`unde flags readers`); a stale copy would split the hash."""
    shipped = json.loads((CHART_DIR / "flag-readers.json").read_text())
    assert shipped == flag_readers(), (
        "helm/unde-recognition/flag-readers.json is stale: run "
        "`unde flags readers > helm/unde-recognition/flag-readers.json`")


def _chart_hashes(docs: list[dict[str, Any]]) -> dict[str, str]:
    hashes = {s["metadata"]["labels"]["unde.life/function"]:
              s["spec"]["template"]["metadata"]["annotations"][FLAGS_HASH_ANNOTATION]
              for s in find(docs, "Service")}
    (worker,) = find(docs, "Deployment")
    hashes["worker"] = worker["spec"]["template"]["metadata"]["annotations"][FLAGS_HASH_ANNOTATION]
    return hashes


@pytest.mark.parametrize("flags", [
    {},
    {"SEARCH_BACKEND": "ximilar", "CONFIDENCE_HIGH": 1.0, "MARGIN": 0.125, "SEARCH_IVF_PROBES": 30},
    {"XIMILAR_PILOT_BRANDS": 'H&M, <Zara> "Mango"\\ Café — \u2028\u2029 \t end', "GEMINI_MODEL": "gemini-2.5-flash",
     "LOG_LEVEL": "DEBUG", "INDEX_BATCH_SIZE": 64, "CONFIDENCE_THRESHOLD": 0.8},
])
def test_chart_and_unde_flags_compute_one_hash(flags: dict[str, Any]) -> None:
    """The real Helm's hash of each function equals unde.flags.flags_hash of the ConfigMap it wrote."""
    docs = render({"flags": flags})
    (configmap,) = find(docs, "ConfigMap")
    hashes = _chart_hashes(docs)
    for function in FUNCTIONS:
        assert hashes[function] == flags_hash(configmap["data"], function), function
    assert hashes["worker"] == hashes["indexer"]
    assert len(set(hashes.values())) > 1  # per function, not one hash of everything


def test_helm_upgrade_after_a_persisted_flags_set_changes_nothing(kube: tuple[FakeKubeApi, Path]) -> None:
    """`unde flags set` then the same value in values.yaml: the upgrade renders what is live, so
    no revision rolls and (Helm 4, server-side apply) no field changes owner: no conflict."""
    api, kubeconfig = kube
    assert run(kubeconfig, "set", "SEARCH_BACKEND=ximilar", "AVAILABILITY_WINDOW=48h") == 0
    docs = render({"flags": {"SEARCH_BACKEND": "ximilar", "AVAILABILITY_WINDOW": "48h"}})
    (configmap,) = find(docs, "ConfigMap")
    assert api.get("configmaps", NS, "unde-flags")["data"] == configmap["data"]
    assert all_hashes(api) == {("worker" if f == "worker" else f"unde-{f.replace('_', '-')}"): h
                               for f, h in _chart_hashes(docs).items()}
    # Not persisted: the chart's values differ from the live ones on exactly what was set.
    live = all_hashes(api)
    stale = {("worker" if f == "worker" else f"unde-{f.replace('_', '-')}"): h
             for f, h in _chart_hashes(list(render_profile("default"))).items()}
    assert {name for name in live if live[name] != stale[name]} == {"unde-vision-gateway", "unde-orchestrator"}


# --- against the fake API server ------------------------------------------------------------

def test_bad_value_makes_no_request(kube: tuple[FakeKubeApi, Path], capsys: pytest.CaptureFixture[str]) -> None:
    api, kubeconfig = kube
    assert run(kubeconfig, "set", "SEARCH_BACKEND=milvus", "TAGGING_MODE=always") == 2
    assert "SEARCH_BACKEND" in capsys.readouterr().err
    assert api.requests == []
    assert run(kubeconfig, "set", "NO_SUCH_FLAG=1") == 2
    assert api.requests == []


def test_search_backend_rollback_rolls_only_the_gateway(kube: tuple[FakeKubeApi, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    api, kubeconfig = kube
    before = all_hashes(api)
    assert run(kubeconfig, "set", "SEARCH_BACKEND=ximilar") == 0
    assert api.get("configmaps", NS, "unde-flags")["data"]["SEARCH_BACKEND"] == "ximilar"
    after = all_hashes(api)
    assert {name for name in after if after[name] != before[name]} == {"unde-vision-gateway"}
    assert {w.content_type for w in api.writes()} == {"application/merge-patch+json"}
    assert {w.query for w in api.writes()} == {f"fieldManager={FIELD_MANAGER}"}
    assert [w.path for w in api.writes()] == [
        "/api/v1/namespaces/unde/configmaps/unde-flags",
        "/apis/serving.knative.dev/v1/namespaces/unde/services/unde-vision-gateway"]
    out = capsys.readouterr().out
    assert "SEARCH_BACKEND: conditional -> ximilar" in out and "unde-vision-gateway" in out
    # The same value again: nothing to do, nothing written.
    writes = len(api.writes())
    assert run(kubeconfig, "set", "SEARCH_BACKEND=ximilar") == 0
    assert len(api.writes()) == writes
    # Other ConfigMap keys are untouched.
    assert api.get("configmaps", NS, "unde-flags")["data"]["TAGGING_MODE"] == "on_demand"


def test_availability_rollback_rolls_only_the_orchestrator(kube: tuple[FakeKubeApi, Path]) -> None:
    api, kubeconfig = kube
    before = all_hashes(api)
    assert run(kubeconfig, "set", "AVAILABILITY_WINDOW=48h", "MIN_CANDIDATES=5") == 0
    data = api.get("configmaps", NS, "unde-flags")["data"]
    assert (data["AVAILABILITY_WINDOW"], data["MIN_CANDIDATES"]) == ("48h", "5")
    after = all_hashes(api)
    assert {name for name in after if after[name] != before[name]} == {"unde-orchestrator"}


def test_cross_field_rule_uses_the_current_configmap(kube: tuple[FakeKubeApi, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    api, kubeconfig = kube
    assert run(kubeconfig, "set", "VISUAL_WEIGHT=0.6") == 2  # SEMANTIC_WEIGHT stays 0.3
    assert "VISUAL_WEIGHT + SEMANTIC_WEIGHT" in capsys.readouterr().err
    assert api.writes() == [] and api.requests  # read, never written
    assert run(kubeconfig, "set", "VISUAL_WEIGHT=0.6", "SEMANTIC_WEIGHT=0.4") == 0
    assert [w.path.rsplit("/", 1)[1] for w in api.writes()] == ["unde-flags", "unde-llm-reranker"]


def test_indexer_flag_restarts_the_queue_consumer_too(kube: tuple[FakeKubeApi, Path]) -> None:
    api, kubeconfig = kube
    before = all_hashes(api)
    assert run(kubeconfig, "set", "INDEX_BATCH_SIZE=64") == 0
    after = all_hashes(api)
    assert {name for name in after if after[name] != before[name]} == {"unde-indexer", "worker"}
    assert after["unde-indexer"] == after["worker"]


def test_log_level_rolls_every_function(kube: tuple[FakeKubeApi, Path]) -> None:
    api, kubeconfig = kube
    before = all_hashes(api)
    assert run(kubeconfig, "set", "LOG_LEVEL=DEBUG") == 0
    after = all_hashes(api)
    assert all(after[name] != before[name] for name in after)


def test_flag_shadowed_by_a_function_env_is_refused(kube: tuple[FakeKubeApi, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    api, kubeconfig = kube
    assert run(kubeconfig, "set", "INTRA_OP_THREADS=8") == 2
    assert "wins over the ConfigMap" in capsys.readouterr().err
    assert api.writes() == []


def test_show_prints_flags_and_revisions(kube: tuple[FakeKubeApi, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    api, kubeconfig = kube
    assert run(kubeconfig, "show") == 0
    out = capsys.readouterr().out
    assert "SEARCH_BACKEND=conditional    # read by vision_gateway" in out
    assert "unde-embedder-00001" in out and "ready" in out
    assert api.writes() == []


def test_missing_release_is_a_clear_error(kube: tuple[FakeKubeApi, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    api, kubeconfig = kube
    assert main(["flags", "set", "SEARCH_BACKEND=ximilar", "--kubeconfig", str(kubeconfig),
                 "--release", "shop"]) == 1
    assert "ConfigMap unde/shop-flags: HTTP 404" in capsys.readouterr().err
    assert api.writes() == []


def _allowed(rules: list[dict[str, Any]], request: Any) -> bool:
    """Whether a recorded request is permitted by these RBAC rules (get/patch on a named object)."""
    parts = request.path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    resource, name = parts[-2], parts[-1]
    verb = {"GET": "get", "PATCH": "patch"}[request.method]
    return any(group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
               and name in rule.get("resourceNames", [name]) for rule in rules)


def test_the_guides_rbac_role_allows_exactly_what_unde_flags_does(kube: tuple[FakeKubeApi, Path]) -> None:
    import kubernetes_validate

    from unde.settings import REPO_ROOT

    docs = list(yaml.safe_load_all((REPO_ROOT / "k8s" / "20-unde-flags-rbac.yaml").read_text()))
    for doc in docs:
        kubernetes_validate.validate(doc, "1.31", strict=True)
    (role,) = [d for d in docs if d["kind"] == "Role"]
    api, kubeconfig = kube
    assert run(kubeconfig, "show") == 0
    assert run(kubeconfig, "set", "SEARCH_BACKEND=ximilar", "INDEX_BATCH_SIZE=64", "LOG_LEVEL=DEBUG") == 0
    assert {r.method for r in api.requests} == {"GET", "PATCH"}
    denied = [f"{r.method} {r.path}" for r in api.requests if not _allowed(role["rules"], r)]
    assert denied == []
    # ... and no more than that: without the Deployment rule the worker restart is refused.
    narrower = [rule for rule in role["rules"] if "deployments" not in rule["resources"]]
    assert any(not _allowed(narrower, r) for r in api.writes())


def test_set_of_the_current_value_rolls_a_reader_left_behind(kube: tuple[FakeKubeApi, Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Helm 3 after an unpersisted `set`: the ConfigMap is reverted (three-way patch) but the
    Knative Service keeps the emergency hash (patched old manifest → new only). Setting the
    value again brings the gateway's revision back to the chart's hash, without a ConfigMap write."""
    api, kubeconfig = kube
    chart = _chart_hashes(list(render_profile("default")))
    assert run(kubeconfig, "set", "SEARCH_BACKEND=ximilar") == 0
    api.get("configmaps", NS, "unde-flags")["data"]["SEARCH_BACKEND"] = "conditional"  # Helm 3's revert
    writes = len(api.writes())
    assert run(kubeconfig, "set", "SEARCH_BACKEND=conditional") == 0
    new = api.writes()[writes:]
    assert [w.path.rsplit("/", 1)[1] for w in new] == ["unde-vision-gateway"]
    assert revision_hash(api, "unde-vision-gateway") == chart["vision_gateway"]
    assert "new revision requested: unde-vision-gateway" in capsys.readouterr().out
