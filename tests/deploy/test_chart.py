"""The chart renders, validates against Kubernetes/Knative/KEDA schemas, and says what we mean."""

from __future__ import annotations

import copy
import json
import re
import typing
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.chart import CHART_DIR, FUNCTIONS, SCHEMAS_DIR, find, render, render_profile
from unde.flags import FUNCTION_SETTINGS, ReleaseNames, settable_flags

PROFILES = ("default", "dev", "production")
CORE_API_VERSIONS = {"v1", "apps/v1", "batch/v1", "networking.k8s.io/v1"}
CRD_SCHEMAS = {
    ("serving.knative.dev/v1", "Service"): "knative-service.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication.json",
}
KSVC = "Service"


def ksvcs(docs: Any) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["labels"]["unde.life/function"]: d for d in find(docs, KSVC)
            if d["apiVersion"] == "serving.knative.dev/v1"}


def container(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]["template"]["spec"]
    first: dict[str, Any] = spec["containers"][0]
    return first


def test_lint_strict_is_clean() -> None:
    for values in ({}, {"flags": {"SEARCH_BACKEND": "ximilar"}}):
        report = helm_python.lint(CHART_DIR, values, strict=True)
        assert report["errors"] == [], report
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("profile", PROFILES)
def test_core_kinds_validate_against_kubernetes_1_33(profile: str) -> None:
    docs = render_profile(profile)
    core = [d for d in docs if d["apiVersion"] in CORE_API_VERSIONS]
    assert {d["kind"] for d in core} >= {"ConfigMap", "Deployment", "Job", "NetworkPolicy", "ServiceAccount"}
    for doc in core:
        kubernetes_validate.validate(doc, "1.33", strict=True)


@pytest.mark.parametrize("profile", PROFILES)
def test_custom_resources_validate_against_their_crd_schemas(profile: str) -> None:
    docs = render_profile(profile)
    unknown = [(d["apiVersion"], d["kind"]) for d in docs
               if d["apiVersion"] not in CORE_API_VERSIONS and (d["apiVersion"], d["kind"]) not in CRD_SCHEMAS]
    assert unknown == []
    for doc in docs:
        schema_file = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if schema_file:
            schema = json.loads((SCHEMAS_DIR / schema_file).read_text())
            jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


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


def test_crd_schemas_reject_what_knative_and_keda_reject() -> None:
    """The vendored schemas are not vacuous: they catch real mistakes."""
    docs = render_profile("default")
    knative = json.loads((SCHEMAS_DIR / "knative-service.json").read_text())
    scaled = json.loads((SCHEMAS_DIR / "keda-scaledobject.json").read_text())
    service = copy.deepcopy(ksvcs(docs)["embedder"])
    service["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, knative)
    service = copy.deepcopy(ksvcs(docs)["embedder"])
    service["spec"]["template"]["spec"]["hostNetwork"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, knative)
    scaled_object = copy.deepcopy(find(docs, "ScaledObject")[0])
    scaled_object["spec"]["triggers"][0]["metadata"]["targetQueryValue"] = 200  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled_object, scaled)


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


def test_knative_feature_flags_cover_what_the_chart_uses() -> None:
    patch = yaml.safe_load((CHART_DIR.parents[1] / "k8s" / "10-knative-config-features.patch.yaml").read_text())
    enabled = {k for k, v in patch["data"].items() if v == "enabled"}
    for profile in PROFILES:
        for service in ksvcs(render_profile(profile)).values():
            spec = service["spec"]["template"]["spec"]
            if "affinity" in spec:
                assert "kubernetes.podspec-affinity" in enabled
            for volume in spec.get("volumes", []):
                if "emptyDir" in volume:
                    assert "kubernetes.podspec-emptydir" in enabled
                if "persistentVolumeClaim" in volume:
                    assert "kubernetes.podspec-persistent-volume-claim" in enabled


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
    secret_names = {"PRODUCTION_DB_URL", "STAGING_DB_URL", "XIMILAR_API_TOKEN", "GEMINI_API_KEY", "INTERNAL_TOKEN"}
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
])
def test_values_schema_rejects_bad_values_at_install(bad: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render(bad)


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


def test_flag_change_rolls_a_new_revision_on_helm_upgrade() -> None:
    def hashes(docs: list[dict[str, Any]]) -> set[str]:
        return {s["spec"]["template"]["metadata"]["annotations"]["unde.life/flags-hash"]
                for s in ksvcs(docs).values()}

    before, after = hashes(render()), hashes(render({"flags": {"SEARCH_BACKEND": "ximilar"}}))
    assert len(before) == len(after) == 1 and before != after


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
