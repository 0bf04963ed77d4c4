"""``KEY=VALUE`` overrides (``--set``), shared by the CLI, the training config and the pipelines.

A neutral module: the library parses overrides without depending on its command line.

    >>> parse_set(["scale=0.9", "formats=[onnx]"])
    {'scale': 0.9, 'formats': ['onnx']}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from detpipe.errors import InvalidInput


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set`` items, ``["scale=0.9", "formats=[onnx]"]`` -> ``{"scale": 0.9, "formats": ["onnx"]}``.

    Values are parsed as YAML; an empty value is None.

    Raises:
        InvalidInput: an item without ``=`` or a value that is not YAML.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--set {item}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise InvalidInput(f"--set {item}: value is not valid YAML") from None
    return out
