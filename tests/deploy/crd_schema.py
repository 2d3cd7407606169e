"""Validate custom resources against the upstream CRDs vendored in tests/deploy/crds/.

A CRD's `openAPIV3Schema` is a structural schema: the API server PRUNES a field it does not
declare (silently, unless the client asks for strict field validation, as `kubectl apply`
does). A pruned field in our chart is a bug either way, so the checker is strict: an object
schema with `properties` and neither `additionalProperties` nor
`x-kubernetes-preserve-unknown-fields` rejects unknown fields. `nullable` is honoured; the
`x-kubernetes-*` markers other than preserve-unknown-fields add no check here.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
import yaml

from tests.deploy.chart import CRDS_DIR

#: (apiVersion, kind) → the vendored CRD file.
CRD_FILES = {
    ("serving.knative.dev/v1", "Service"): "knative-serving-v1.18.0/service.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-v2.17.2/keda.sh_scaledobjects.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-v2.17.2/keda.sh_triggerauthentications.yaml",
}


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def crd(api_version: str, kind: str) -> dict[str, Any]:
    """The vendored CRD object for this kind."""
    loaded: dict[str, Any] = yaml.safe_load((CRDS_DIR / CRD_FILES[(api_version, kind)]).read_text())
    return loaded


@cache
def _validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    definition = crd(api_version, kind)
    group, version = api_version.split("/")
    assert definition["spec"]["group"] == group and definition["spec"]["names"]["kind"] == kind
    (served,) = [v for v in definition["spec"]["versions"] if v["name"] == version and v["served"]]
    schema = _strict(served["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(json.loads(json.dumps(schema)))


def errors(obj: dict[str, Any]) -> list[str]:
    """Every violation of the object's CRD schema, as `path: message` lines."""
    validator = _validator(obj["apiVersion"], obj["kind"])
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(obj)]
