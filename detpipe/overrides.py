"""``KEY=VALUE`` overrides (``--set``), shared by the CLI, the training config and the pipelines.

A neutral module: the library parses overrides without depending on its command line.

    >>> parse_set(["scale=0.9", "formats=[onnx]"])
    {'scale': 0.9, 'formats': ['onnx']}
    >>> format_set("scale", 0.9), format_set("formats", ["onnx"])
    ('scale=0.9', 'formats=[onnx]')

:func:`format_set` is the inverse, for commands detpipe prints or hands to other processes
(torchrun workers, PyTorchJob and TrainJob pods): one ``--set KEY=VALUE`` per override, on
one line, that :func:`parse_set` reads back to the same value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from detpipe.errors import InvalidInput


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set`` items, ``["scale=0.9", "formats=[onnx]"]`` -> ``{"scale": 0.9, "formats": ["onnx"]}``.

    Values are parsed as YAML; an empty value is None.

    Raises:
        InvalidInput: an item without ``=`` or a value that is not YAML.
    """
    import yaml  # here, not at the top: the CLI imports this module for `--help` too

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


def format_set(key: str, value: Any) -> str:
    """One override as a one-line ``KEY=VALUE`` item that :func:`parse_set` reads back to ``value``.

    The value is written as YAML flow (``0.5``, ``[1, 2]``, ``{a: 1}``, ``null``), never with
    the ``...`` document end marker a bare ``yaml.safe_dump(0.5)`` adds; a string holding a
    line break is written as a JSON string (JSON is YAML), so the item stays on one line.
    """
    import yaml

    text = yaml.safe_dump([value], default_flow_style=True, width=math.inf).strip()[1:-1]
    if "\n" in text:
        text = json.dumps(value)
    return f"{key}={text}"
