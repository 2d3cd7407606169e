"""The chart, rendered by the real Helm, validates against Kubernetes and the upstream CRDs."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import typing
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import crd_schema
from tests.deploy.chart import CHART_DIR, CRDS_DIR, FUNCTIONS, KUBE_VERSION, find, render, render_profile
from tests.deploy.helm import HelmError, helm
from unde.flags import FUNCTION_SETTINGS, ReleaseNames, settable_flags

PROFILES = ("default", "dev", "production")
CORE_API_VERSIONS = {"v1", "apps/v1", "batch/v1", "networking.k8s.io/v1"}
KSVC = "Service"
REPO = CHART_DIR.parents[1]
SCHEMA_ERROR = "values don't meet the specifications of the schema"


def ksvcs(docs: Any) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["labels"]["unde.life/function"]: d for d in find(docs, KSVC)
            if d["apiVersion"] == "serving.knative.dev/v1"}


def container(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]["template"]["spec"]
    first: dict[str, Any] = spec["containers"][0]
    return first


@pytest.mark.parametrize("profile", PROFILES)
def test_helm_lint_strict_is_clean(profile: str) -> None:
    args = ["lint", "--strict", str(CHART_DIR), "--kube-version", KUBE_VERSION]
    if profile != "default":
        args += ["-f", str(CHART_DIR / f"values-{profile}.yaml")]
    out = helm(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


@pytest.mark.parametrize("kube", ["1.28", "1.31", "1.37"])  # Chart.yaml's floor, the guide's k3s, newest
@pytest.mark.parametrize("profile", PROFILES)
def test_core_kinds_validate_against_kubernetes(profile: str, kube: str) -> None:
    docs = render_profile(profile)
    core = [d for d in docs if d["apiVersion"] in CORE_API_VERSIONS]
    assert {d["kind"] for d in core} >= {"ConfigMap", "Deployment", "Job", "NetworkPolicy", "ServiceAccount"}
    for doc in core:
        kubernetes_validate.validate(doc, kube, strict=True)


@pytest.mark.parametrize("profile", PROFILES)
def test_custom_resources_validate_against_the_upstream_crds(profile: str) -> None:
    """Knative Serving knative-v1.18.0 and KEDA v2.17.2 CRDs, vendored in tests/deploy/crds."""
    docs = render_profile(profile)
    custom = [d for d in docs if d["apiVersion"] not in CORE_API_VERSIONS]
    kinds = {(d["apiVersion"], d["kind"]) for d in custom}
    assert kinds == set(crd_schema.CRD_FILES)
    for doc in custom:
        assert crd_schema.errors(doc) == [], doc["metadata"]["name"]


@pytest.mark.parametrize("profile", PROFILES)
def test_knative_pod_specs_are_valid_pod_specs(profile: str) -> None:
    """A Knative revision template is a core PodSpec subset; Knative fills the probe port."""
    for service in ksvcs(render_profile(profile)).values():
        spec = copy.deepcopy(service["spec"]["template"]["spec"])
        for key in ("containerConcurrency", "timeoutSeconds"):
            spec.pop(key)
        main = spec["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            main[probe]["httpGet"]["port"] = main["ports"][0]["containerPort"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "revision"}, "spec": spec}
        kubernetes_validate.validate(pod, "1.33", strict=True)


def test_upstream_crds_reject_what_the_api_server_would_prune_or_refuse() -> None:
    """The checks are not vacuous: an undeclared field, a wrong type, a missing field fail."""
    docs = render_profile("default")
    service = copy.deepcopy(ksvcs(docs)["embedder"])
    service["spec"]["template"]["spec"]["nodeName"] = "i7-1"  # not in Knative's PodSpec subset
    assert any("nodeName" in e for e in crd_schema.errors(service))
    service = copy.deepcopy(ksvcs(docs)["embedder"])
    service["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo: pruned
    assert any("readinesProbe" in e for e in crd_schema.errors(service))
    service = copy.deepcopy(ksvcs(docs)["embedder"])
    service["spec"]["template"]["spec"]["containerConcurrency"] = "four"
    assert crd_schema.errors(service)
    scaled_object = copy.deepcopy(find(docs, "ScaledObject")[0])
    scaled_object["spec"]["triggers"][0]["metadata"]["targetQueryValue"] = 200  # must be a string
    assert crd_schema.errors(scaled_object)
    del scaled_object["spec"]["scaleTargetRef"]
    assert any("scaleTargetRef" in e for e in crd_schema.errors(scaled_object))


def test_vendored_upstream_files_are_verbatim() -> None:
    """Each file under tests/deploy/crds is the upstream file at the pinned tag (SHA-256)."""
    manifest = json.loads((CRDS_DIR / "SOURCES.json").read_text())
    listed = {entry["file"] for entry in manifest["files"]}
    on_disk = {str(p.relative_to(CRDS_DIR)) for p in CRDS_DIR.rglob("*.yaml")}
    assert listed == on_disk
    for entry in manifest["files"]:
        assert hashlib.sha256((CRDS_DIR / entry["file"]).read_bytes()).hexdigest() == entry["sha256"], entry
        assert entry["tag"] in {"knative-v1.18.0", "v2.17.2"} and len(entry["commit"]) == 40
        assert entry["tag"].removeprefix("knative-") in entry["file"]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_function_has_a_knative_service_with_probes_and_scale(profile: str) -> None:
    services = ksvcs(render_profile(profile))
    assert set(services) == set(FUNCTIONS)
    for function, service in services.items():
        template = service["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert int(annotations["autoscaling.knative.dev/max-scale"]) >= int(
            annotations["autoscaling.knative.dev/min-scale"])
        assert template["spec"]["containerConcurrency"] >= 1
        main = container(service)
        assert main["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"cpu", "memory"} <= set(main["resources"]["requests"]) and main["resources"]["limits"]
        assert main["securityContext"]["runAsNonRoot"] is True
        visibility = service["metadata"]["labels"].get("networking.knative.dev/visibility")
        assert visibility == (None if function == "orchestrator" else "cluster-local")
        assert main["envFrom"] == [{"configMapRef": {"name": "unde-flags"}}]
    for warm in ("orchestrator", "embedder"):
        annotations = services[warm]["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["autoscaling.knative.dev/min-scale"]) >= 1


def test_service_urls_wire_the_functions_together() -> None:
    services = ksvcs(render_profile("default"))
    env = {e["name"]: e.get("value") for e in container(services["orchestrator"])["env"]}
    assert env["VISION_GATEWAY_URL"] == "http://unde-vision-gateway.unde.svc.cluster.local"
    assert env["LLM_RERANKER_URL"] == "http://unde-llm-reranker.unde.svc.cluster.local"
    env = {e["name"]: e.get("value") for e in container(services["vision_gateway"])["env"]}
    assert env["EMBEDDER_URL"] == "http://unde-embedder.unde.svc.cluster.local"


def test_sizing_follows_the_spec_hosts() -> None:
    services = ksvcs(render_profile("default"))

    def cpu(function: str, kind: str) -> float:
        value = str(container(services[function])["resources"][kind]["cpu"])
        return float(value[:-1]) / 1000 if value.endswith("m") else float(value)

    assert cpu("orchestrator", "requests") < cpu("vision_gateway", "requests") < cpu("embedder", "requests")
    assert cpu("embedder", "limits") >= 4  # the spec's 4 intra-op threads
    env = {e["name"]: e.get("value") for e in container(services["embedder"])["env"]}
    assert (env["INTRA_OP_THREADS"], env["INTER_OP_THREADS"]) == ("4", "1")


def test_embedder_is_pinned_to_the_inference_nodes() -> None:
    services = ksvcs(render(
        {"functions": {"embedder": {"nodeAffinity": {"key": "hetzner/cpu", "values": ["i7-8700"]}}}}))
    terms = services["embedder"]["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "hetzner/cpu", "operator": "In", "values": ["i7-8700"]}]}]
    assert "affinity" not in services["orchestrator"]["spec"]["template"]["spec"]
    dev = ksvcs(render_profile("dev"))
    assert "affinity" not in dev["embedder"]["spec"]["template"]["spec"]


def _upstream_example_keys(name: str) -> set[str]:
    """Keys documented in a Knative ConfigMap's `_example` block at the pinned tag."""
    configmap = yaml.safe_load((CRDS_DIR / "knative-serving-v1.18.0" / f"config-{name}.yaml").read_text())
    return set(re.findall(r"^([a-z][-a-z0-9.]*):", configmap["data"]["_example"], flags=re.M))


@pytest.mark.parametrize(("patch", "configmap"), [
    ("10-knative-config-features.patch.yaml", "features"),
    ("11-knative-config-network.patch.yaml", "network"),
    ("13-knative-config-deployment.patch.yaml", "deployment"),
])
def test_knative_config_patches_use_real_keys(patch: str, configmap: str) -> None:
    """A misspelt key (kubernetes.podspec-emptydir) is silently ignored by Knative."""
    data = yaml.safe_load((REPO / "k8s" / patch).read_text())["data"]
    assert set(data) <= _upstream_example_keys(configmap)


def test_knative_feature_flags_cover_what_the_chart_uses() -> None:
    patch = yaml.safe_load((REPO / "k8s" / "10-knative-config-features.patch.yaml").read_text())
    enabled = {k for k, v in patch["data"].items() if v == "enabled"}
    used = set()
    for profile in PROFILES:
        for service in ksvcs(render_profile(profile)).values():
            spec = service["spec"]["template"]["spec"]
            if "affinity" in spec:
                used.add("kubernetes.podspec-affinity")
            for volume in spec.get("volumes", []):
                if "emptyDir" in volume:
                    used.add("kubernetes.podspec-volumes-emptydir")
                if "persistentVolumeClaim" in volume:
                    used.add("kubernetes.podspec-persistent-volume-claim")
    assert used == {"kubernetes.podspec-affinity", "kubernetes.podspec-volumes-emptydir",
                    "kubernetes.podspec-persistent-volume-claim"}
    assert used <= enabled


def test_dev_registry_skips_knatives_tag_resolution() -> None:
    """skaffold dev pushes to localhost:5000, which Knative's controller cannot reach."""
    data = yaml.safe_load((REPO / "k8s" / "13-knative-config-deployment.patch.yaml").read_text())["data"]
    registries = data["registries-skipping-tag-resolving"].split(",")
    assert "localhost:5000" in registries
    assert {"kind.local", "ko.local", "dev.local"} <= set(registries)  # Knative's defaults kept
    assert "--default-repo=localhost:5000" in (REPO / "skaffold.yaml").read_text()
    mirrors = yaml.safe_load((REPO / "k8s" / "registries.k3s.yaml").read_text())["mirrors"]
    assert "localhost:5000" in mirrors


@pytest.mark.parametrize("profile", PROFILES)
def test_readiness_probe_leaves_queue_proxy_probing_aggressively(profile: str) -> None:
    """Knative's queue-proxy retries every 50 ms until ready only when periodSeconds is unset."""
    for service in ksvcs(render_profile(profile)).values():
        probe = container(service)["readinessProbe"]
        assert probe.get("periodSeconds", 0) == 0
        assert probe["httpGet"]["path"] == "/healthz"


def test_indexer_consumer_is_a_deployment_scaled_to_zero_by_keda() -> None:
    docs = render_profile("default")
    (deployment,) = find(docs, "Deployment")
    assert deployment["metadata"]["name"] == ReleaseNames().indexer_worker
    assert "replicas" not in deployment["spec"]  # KEDA owns the replica count
    assert container(deployment)["command"] == ["python", "-m", "unde.indexing.worker"]
    (scaled,) = find(docs, "ScaledObject")
    assert scaled["spec"]["minReplicaCount"] == 0
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": deployment["metadata"]["name"]}
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    assert "FROM index_jobs" in trigger["metadata"]["query"]
    (auth,) = find(docs, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "connection", "name": "unde-recognition-secrets", "key": "PRODUCTION_DB_URL"}]
    assert find(render({"indexerWorker": {"enabled": False}}), "ScaledObject") == []


def test_migration_job_is_a_pre_install_hook_running_unde_db_migrate() -> None:
    (job,) = find(render_profile("default"), "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert container(job)["command"] == ["unde", "db", "migrate"]
    assert {e["name"] for e in container(job)["env"]} == {"PRODUCTION_DB_URL", "STAGING_DB_URL"}


def _secret_like(text: str) -> list[str]:
    patterns = [r"postgres(ql)?://[^\s\"']*:[^\s\"']*@", r"\bAIza[0-9A-Za-z_-]{20,}", r"-----BEGIN"]
    return [p for p in patterns if re.search(p, text)]


@pytest.mark.parametrize("profile", PROFILES)
def test_no_literal_secrets_only_secret_references(profile: str) -> None:
    docs = render_profile(profile)
    assert find(docs, "Secret") == []
    assert _secret_like(yaml.safe_dump_all(docs)) == []
    secret_names = {"PRODUCTION_DB_URL", "STAGING_DB_URL", "XIMILAR_API_TOKEN", "GEMINI_API_KEY", "INTERNAL_TOKEN",
                    "APP_API_KEYS"}
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert not secret_names & set(doc["data"])
        if doc["kind"] in ("Service", "Deployment", "Job") and "template" in doc.get("spec", {}):
            for entry in container(doc).get("env", []):
                if entry["name"] in secret_names:
                    assert "value" not in entry
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == "unde-recognition-secrets"
    # The detector itself works.
    # (assembled at run time so this file itself holds no credential-shaped literal)
    assert _secret_like("PRODUCTION_DB_URL: postgresql://app:" + "hunter2" + "@db:5432/unde")


def test_every_image_is_parameterised() -> None:
    digest = "sha256:" + "ab" * 32
    values: dict[str, Any] = {"functions": {
        f: {"image": {"repository": f"registry.test/unde/{f}", "tag": f"t-{f}"}} for f in FUNCTIONS}}
    values["functions"]["embedder"]["image"]["digest"] = digest
    docs = render(values)
    services = ksvcs(docs)
    for function in FUNCTIONS:
        expected = (f"registry.test/unde/{function}@{digest}" if function == "embedder"
                    else f"registry.test/unde/{function}:t-{function}")
        assert container(services[function])["image"] == expected
    assert container(find(docs, "Deployment")[0])["image"] == "registry.test/unde/indexer:t-indexer"
    assert container(find(docs, "Job")[0])["image"] == "registry.test/unde/orchestrator:t-orchestrator"
    images = {container(d)["image"] for d in docs if d["kind"] in ("Service", "Deployment", "Job")}
    assert all(image.startswith("registry.test/") for image in images)


@pytest.mark.parametrize("bad", [
    {"flags": {"SEARCH_BACKEND": "milvus"}},
    {"flags": {"TAGGING_MODE": "sometimes"}},
    {"flags": {"AVAILABILITY_WINDOW": "2d"}},
    {"flags": {"AVAILABILITY_WINDOW": "200h"}},
    {"flags": {"CONFIDENCE_HIGH": 1.5}},
    {"flags": {"MIN_CANDIDATES": -1}},
    {"flags": {"SEARCH_BACKND": "ximilar"}},
    {"functions": {"embedder": {"scale": {"min": 0}}}},
    {"functions": {"orchestrator": {"containerConcurrency": -1}}},
    {"functions": {"embedder": {"nodeAffinity": {"enabled": True, "key": "", "values": []}}}},
    {"functions": {"indexer": {"image": {"digest": "latest"}}}},
    {"functions": {"vision_gateway": {"secretEnv": ["AWS_SECRET"]}}},
    {"models": {"source": "pvc", "claimName": ""}},
    {"indexerWorker": {"keda": {"minReplicaCount": -1}}},
    {"secrets": {"existingSecret": ""}},
    {"securityContext": {"runAsNonRoot": False}},
    {"functions": {"llm_reranker": {"scale": {"min": 5, "max": 4}}}},
    {"functions": {"orchestrator": {"scale": {"min": 20, "max": 19}}}},
    {"indexerWorker": {"keda": {"minReplicaCount": 3, "maxReplicaCount": 2}}},
    {"functions": {"orchestrator": {"env": {"APP_API_KEYS": "plaintext-key"}}}},
    {"functions": {"orchestrator": {"image": {"tag": "has space"}}}},
    {"migrations": {"activeDeadlineSeconds": 900}},
])
def test_values_schema_rejects_bad_values_at_install(bad: dict[str, Any]) -> None:
    with pytest.raises(HelmError, match=SCHEMA_ERROR):
        render(bad)


@pytest.mark.parametrize(("scale", "ok"), [((4, 4), True), ((0, 1), True), ((2, 1), False), ((20, 50), True)])
def test_min_scale_above_max_scale_is_refused_before_any_hook(scale: tuple[int, int], ok: bool) -> None:
    values = {"functions": {"indexer": {"scale": {"min": scale[0], "max": scale[1]}}}}
    if ok:
        annotations = ksvcs(render(values))["indexer"]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["autoscaling.knative.dev/min-scale"] == str(scale[0])
    else:
        with pytest.raises(HelmError, match=SCHEMA_ERROR):
            render(values)


def test_values_schema_flags_agree_with_the_settings_models() -> None:
    """Every flag in values.schema.json is a real, non-secret setting with the same bounds."""
    from annotated_types import Ge, Le

    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    flags = schema["properties"]["flags"]["properties"]
    readers = settable_flags()
    for name, prop in flags.items():
        assert name in readers, f"{name} is not a settable setting"
        model = FUNCTION_SETTINGS[readers[name][0]]
        field = model.model_fields[name.lower()]
        if typing.get_origin(field.annotation) is typing.Literal:
            assert prop["enum"] == list(typing.get_args(field.annotation)), name
        for meta in field.metadata:
            if isinstance(meta, Ge):
                assert prop["minimum"] == meta.ge, name
            if isinstance(meta, Le):
                assert prop["maximum"] == meta.le, name
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["flags"]
    assert set(defaults) <= set(flags)
    for name in ("SEARCH_BACKEND", "TAGGING_MODE", "AVAILABILITY_WINDOW", "MIN_CANDIDATES"):
        assert name in defaults  # the spec's emergency-rollback flags are in the ConfigMap


def test_flags_configmap_holds_values_every_function_accepts() -> None:
    (configmap,) = find(render_profile("default"), "ConfigMap")
    data = configmap["data"]
    assert data["MIN_CANDIDATES"] == "3" and data["CONFIDENCE_HIGH"] == "0.85"
    for model in FUNCTION_SETTINGS.values():
        model.model_validate({k.lower(): v for k, v in data.items() if k.lower() in model.model_fields})


def test_flag_change_on_helm_upgrade_rolls_only_the_functions_that_read_it() -> None:
    def hashes(docs: list[dict[str, Any]]) -> dict[str, str]:
        rolled = {f: s["spec"]["template"]["metadata"]["annotations"]["unde.life/flags-hash"]
                  for f, s in ksvcs(docs).items()}
        (worker,) = find(docs, "Deployment")
        rolled["worker"] = worker["spec"]["template"]["metadata"]["annotations"]["unde.life/flags-hash"]
        return rolled

    before = hashes(render())
    after = hashes(render({"flags": {"SEARCH_BACKEND": "ximilar"}}))
    assert {f for f in before if before[f] != after[f]} == {"vision_gateway"}
    after = hashes(render({"flags": {"INDEX_BATCH_SIZE": 64}}))
    assert {f for f in before if before[f] != after[f]} == {"indexer", "worker"}
    after = hashes(render({"flags": {"LOG_LEVEL": "DEBUG"}}))
    assert all(before[f] != after[f] for f in before)


def test_network_policies_follow_the_call_graph() -> None:
    policies = {p["metadata"]["name"]: p for p in find(render_profile("default"), "NetworkPolicy")}

    def callers(function: str) -> list[str]:
        rule = policies[f"unde-{function.replace('_', '-')}-ingress"]["spec"]["ingress"][0]["from"]
        return [peer["podSelector"]["matchLabels"]["unde.life/function"] for peer in rule if "podSelector" in peer]

    assert callers("vision_gateway") == ["orchestrator"]
    assert callers("llm_reranker") == ["orchestrator"]
    assert callers("embedder") == ["vision_gateway"]
    assert "unde-orchestrator-ingress" not in policies  # public
    knative_peer = policies["unde-embedder-ingress"]["spec"]["ingress"][0]["from"][0]
    assert knative_peer["namespaceSelector"]["matchExpressions"][0]["values"] == ["knative-serving", "kourier-system"]

    def egress_group(name: str) -> list[str]:
        return policies[name]["spec"]["podSelector"]["matchExpressions"][1]["values"]

    assert egress_group("unde-egress-callers") == ["orchestrator", "vision_gateway"]
    assert set(egress_group("unde-egress-leaves")) == {
        "llm_reranker", "embedder", "indexer", "indexer-worker", "migrate"}
    leaves = json.dumps(policies["unde-egress-leaves"]["spec"]["egress"])
    assert "knative-serving" not in leaves and "10.42.0.0/16" in leaves


def test_names_match_what_unde_flags_patches() -> None:
    docs = render(release="shop")
    names = ReleaseNames(release="shop", namespace="unde")
    assert {d["metadata"]["name"] for d in find(docs, "ConfigMap")} == {names.configmap}
    assert {s["metadata"]["name"] for s in ksvcs(docs).values()} == {names.service(f) for f in FUNCTIONS}
    assert find(docs, "Deployment")[0]["metadata"]["name"] == names.indexer_worker


# --- the app's API keys ------------------------------------------------------------------------

def _orchestrator_env(docs: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(ksvcs(docs)["orchestrator"])["env"]}


@pytest.mark.parametrize("profile", PROFILES)
def test_public_orchestrator_reads_app_api_keys_from_the_secret(profile: str) -> None:
    entry = _orchestrator_env(render_profile(profile))["APP_API_KEYS"]
    assert entry == {"name": "APP_API_KEYS", "valueFrom": {"secretKeyRef": {
        "name": "unde-recognition-secrets", "key": "APP_API_KEYS"}}}  # not optional: no key, no pod
    for function, service in ksvcs(render_profile(profile)).items():
        if function != "orchestrator":
            assert "APP_API_KEYS" not in {e["name"] for e in container(service)["env"]}


@pytest.mark.parametrize(("values", "message"), [
    ({"functions": {"orchestrator": {"secretEnv": ["PRODUCTION_DB_URL", "STAGING_DB_URL", "INTERNAL_TOKEN"]}}},
     "APP_API_KEYS is not in functions.orchestrator.secretEnv"),
    ({"secrets": {"optional": ["XIMILAR_API_TOKEN", "GEMINI_API_KEY", "APP_API_KEYS"]}},
     "APP_API_KEYS is in secrets.optional"),
])
def test_chart_refuses_a_public_orchestrator_without_app_keys(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(values)
    allowed = copy.deepcopy(values)
    allowed.setdefault("functions", {}).setdefault("orchestrator", {})["allowUnauthenticated"] = True
    assert ksvcs(render(allowed))["orchestrator"]  # explicitly allowed: renders
    private = copy.deepcopy(values)
    private.setdefault("functions", {}).setdefault("orchestrator", {})["public"] = False
    assert ksvcs(render(private))["orchestrator"]["metadata"]["labels"][
        "networking.knative.dev/visibility"] == "cluster-local"


def test_app_api_keys_key_name_in_the_secret_is_a_value() -> None:
    docs = render({"secrets": {"keys": {"APP_API_KEYS": "mobile-app-keys"}}})
    assert _orchestrator_env(docs)["APP_API_KEYS"]["valueFrom"]["secretKeyRef"]["key"] == "mobile-app-keys"


# --- images ------------------------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["1234567", "0123456", "9e41a3c", "1234567-dirty"])
def test_image_tag_given_by_set_stays_the_tag(tag: str) -> None:
    """skaffold passes `--set ...image.tag=<short sha>`; an all-digit SHA arrives as a number."""
    docs = render(sets=(f"functions.orchestrator.image.tag={tag}", f"functions.indexer.image.tag={tag}"))
    assert container(ksvcs(docs)["orchestrator"])["image"] == f"unde-orchestrator:{tag}"
    assert container(find(docs, "Deployment")[0])["image"] == f"unde-indexer:{tag}"
    assert container(find(docs, "Job")[0])["image"] == f"unde-orchestrator:{tag}"


def test_rebuilt_image_with_the_same_tag_makes_a_new_revision_template() -> None:
    """skaffold dev of a dirty tree keeps `<sha>-dirty`; the injected digest still changes."""
    def template(digest: str) -> dict[str, Any]:
        docs = render(sets=("functions.embedder.image.tag=abc1234-dirty",
                            f"functions.embedder.image.digest=sha256:{digest * 64}"))
        revision: dict[str, Any] = ksvcs(docs)["embedder"]["spec"]["template"]
        return revision

    first, second = template("a"), template("b")
    assert first != second
    assert container({"spec": {"template": first}})["image"] == "unde-embedder@sha256:" + "a" * 64


# --- the guide's sizing table ------------------------------------------------------------------

def _sizing_rows() -> dict[str, list[str]]:
    text = (REPO / "k8s" / "README.md").read_text()
    table = text[text.index("| function | spec host |"):].split("\n\n")[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    return {row[0]: row for row in rows}


def test_guide_sizing_table_matches_the_chart() -> None:
    """k8s/README.md's requests → limits column is what values.yaml sets."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    names = {"orchestrator": "orchestrator", "vision gateway": "vision_gateway",
             "LLM reranker": "llm_reranker", "embedder": "embedder", "indexer (HTTP)": "indexer"}
    rows = _sizing_rows()
    for label, function in names.items():
        cfg = values["functions"][function]
        req, lim = cfg["resources"]["requests"], cfg["resources"]["limits"]
        expected = f"{req['cpu']}/{req['memory']} → {lim['cpu']}/{lim['memory']}"
        assert rows[label][2] == expected, label
        assert rows[label][3] == str(cfg["containerConcurrency"]), label
        assert rows[label][4].startswith(f"{cfg['scale']['min']}–{cfg['scale']['max']}"), label
    worker = values["indexerWorker"]
    req, lim = worker["resources"]["requests"], worker["resources"]["limits"]
    assert rows["indexer worker"][2] == f"{req['cpu']}/{req['memory']} → {lim['cpu']}/{lim['memory']}"
