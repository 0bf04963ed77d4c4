"""Per-model inference statistics and configuration, as Triton's extensions report them.

``GET /v2/models/{name}[/versions/{v}]/stats`` (Triton's statistics extension, what
``tritonclient``'s ``get_inference_statistics`` reads) and ``.../config`` (the model
configuration extension, ``get_model_config``) are answered from what the server already
knows: the counts and durations of its own model calls, and the served model's tensors and
batching settings. Durations are nanoseconds, as Triton's are; ``queue``, ``compute_input``
and ``compute_output`` are not measured apart here and report zero counts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

_TRITON_TYPES = {"FP32": "TYPE_FP32", "FP16": "TYPE_FP16", "FP64": "TYPE_FP64"}
_UNMEASURED = ("fail", "queue", "compute_input", "compute_output")


@dataclass
class _Counts:
    inferences: int = 0  # images
    executions: int = 0  # model calls
    ns: int = 0
    last_ms: int = 0
    batches: dict[int, list[int]] = field(default_factory=dict)  # batch size -> [calls, ns]


class InferenceStats:
    """Counts and durations of model calls per (model name, version); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], _Counts] = {}

    def record(self, name: str, version: str, images: int, seconds: float) -> None:
        """One model call of ``images`` images that took ``seconds``."""
        ns = int(seconds * 1e9)
        with self._lock:
            c = self._counts.setdefault((name, version), _Counts())
            c.inferences += images
            c.executions += 1
            c.ns += ns
            c.last_ms = int(time.time() * 1000)
            per_batch = c.batches.setdefault(images, [0, 0])
            per_batch[0] += 1
            per_batch[1] += ns

    def triton(self, name: str, version: str | None = None) -> dict[str, Any]:
        """``{"model_stats": [...]}`` for ``name`` (every version seen, or only ``version``)."""
        with self._lock:
            rows = [
                _model_stats(n, v, c)
                for (n, v), c in sorted(self._counts.items())
                if n == name and version in (None, v)
            ]
        return {"model_stats": rows}


def _model_stats(name: str, version: str, c: _Counts) -> dict[str, Any]:
    success = {"count": c.executions, "ns": c.ns}
    stats = {"success": success, "compute_infer": success, **{k: {"count": 0, "ns": 0} for k in _UNMEASURED}}
    return {
        "name": name,
        "version": version,
        "last_inference": c.last_ms,
        "inference_count": c.inferences,
        "execution_count": c.executions,
        "inference_stats": stats,
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": {"count": 0, "ns": 0},
                "compute_infer": {"count": calls, "ns": ns},
                "compute_output": {"count": 0, "ns": 0},
            }
            for size, (calls, ns) in sorted(c.batches.items())
        ],
    }


def model_config(model: Any, max_batch: int, max_delay_ms: float) -> dict[str, Any]:
    """The served model's configuration in Triton's ``config.pbtxt`` terms (as JSON).

    ``max_batch_size`` is the most images one model call takes here; ``dims`` leave the batch
    dimension out, as Triton's do when ``max_batch_size`` > 0.
    """
    from detpipe.serving.oip import PLATFORMS, tensor_specs

    inp, out = tensor_specs(model)
    return {
        "name": model.name,
        "platform": PLATFORMS.get(model.backend.split("-")[0], model.backend),
        "backend": model.backend,
        "max_batch_size": max_batch,
        "input": [{"name": inp.name, "data_type": _TRITON_TYPES[inp.datatype], "dims": inp.shape[1:]}],
        "output": [{"name": out.name, "data_type": _TRITON_TYPES[out.datatype], "dims": out.shape[1:]}],
        "dynamic_batching": {"max_queue_delay_microseconds": int(max_delay_ms * 1000)},
        "version_policy": {"specific": {"versions": [model.version]}},
    }
