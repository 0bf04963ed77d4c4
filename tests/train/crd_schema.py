"""Validate manifests against a vendored CRD's ``openAPIV3Schema`` (tests/train/crds/README.md).

The API server prunes fields a structural schema does not declare, silently; here every
object with declared ``properties`` is closed (``additionalProperties: false``) unless it
says ``x-kubernetes-preserve-unknown-fields``, so a field the operator would drop fails.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRDS = Path(__file__).parent / "crds"


@cache
def crd_schema(file: str, version: str) -> dict[str, Any]:
    """The strict openAPIV3Schema of ``version`` in the vendored CRD ``file``."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster on these 600 kB
    crd = yaml.load((CRDS / file).read_text(), Loader=loader)
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return _closed(copy.deepcopy(entry["schema"]["openAPIV3Schema"]))


def _closed(node: Any) -> Any:
    if isinstance(node, dict):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            _closed(value)
    elif isinstance(node, list):
        for value in node:
            _closed(value)
    return node


def validate(manifest: dict[str, Any], file: str, version: str) -> None:
    """Raise ``jsonschema.ValidationError`` when ``manifest`` breaks the CRD's schema."""
    jsonschema.Draft7Validator(crd_schema(file, version)).validate(manifest)


def errors(manifest: dict[str, Any], file: str, version: str) -> list[str]:
    """Every schema violation, as ``path: message``."""
    validator = jsonschema.Draft7Validator(crd_schema(file, version))
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)
    )
