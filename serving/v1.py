"""KServe v1 predict bodies: ``{"instances": [{"b64": ...}], "parameters": {...}}`` -> images, NMS params."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.serving.bodies import parse_json

PARAMETERS = {"conf": int | float, "iou": int | float, "max_det": int}


def parse_predict(body: bytes) -> tuple[list[bytes], dict[str, Any]]:
    """``{"instances": [{"b64": ...} | {"image": {"b64": ...}}], "parameters": {...}}`` -> images, params.

    Raises:
        InvalidInput: anything else, with the reason.
    """
    doc = parse_json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list):
        raise InvalidInput('expected a JSON object {"instances": [{"b64": "<base64 image>"}, ...]}')
    images = []
    for i, inst in enumerate(doc["instances"]):
        inst = inst.get("image", inst) if isinstance(inst, dict) else inst
        b64 = inst.get("b64") if isinstance(inst, dict) else None
        if not isinstance(b64, str):
            raise InvalidInput(f'instances[{i}]: expected {{"b64": "<base64 image>"}}')
        try:
            images.append(base64.b64decode(b64, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput(f"instances[{i}]: b64 is not valid base64") from None
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("parameters: expected an object")
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise InvalidInput(f"parameters: unknown {', '.join(unknown)} (known: {', '.join(PARAMETERS)})")
    for key, value in params.items():
        kind = PARAMETERS[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise InvalidInput(
                f"parameters.{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}"
            )
    return images, params
