"""Validate custom resources against their vendored CRDs' ``openAPIV3Schema`` (jsonschema).

Structural schemas leave ``additionalProperties`` unset and the API server prunes unknown
fields silently; :func:`strict` closes every object schema that declares ``properties``
(unless it is marked ``x-kubernetes-preserve-unknown-fields``), so a misspelt field fails
here as it would under ``kubectl apply --validate=strict``. CEL rules
(``x-kubernetes-validations``) are not evaluated.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRDS = Path(__file__).parent / "crds"
FILES = {
    ("argoproj.io", "Rollout"): "rollout-crd.yaml",
    ("argoproj.io", "AnalysisTemplate"): "analysis-template-crd.yaml",
    ("gateway.networking.k8s.io", "HTTPRoute"): "gateway.networking.k8s.io_httproutes.yaml",
    ("serving.kserve.io", "ServingRuntime"): "serving.kserve.io_servingruntimes.yaml",
    ("serving.kserve.io", "InferenceService"): "serving.kserve.io_inferenceservices.yaml.gz",  # 1.9 MB
}


def strict(schema: Any) -> Any:
    """A copy of ``schema`` refusing properties it does not declare."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _validator(group: str, version: str, kind: str) -> jsonschema.Draft7Validator:
    path = CRDS / FILES[(group, kind)]
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = strict(served["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validate(obj: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` (the first problem found) for an invalid object."""
    group, _, version = obj["apiVersion"].partition("/")
    errors = sorted(_validator(group, version, obj["kind"]).iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        raise errors[0]


def is_custom(obj: dict[str, Any]) -> bool:
    return (obj["apiVersion"].split("/")[0], obj["kind"]) in FILES
