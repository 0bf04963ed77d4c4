"""The accuracy gate: an exported artifact may lose at most N mAP points against PyTorch.

Limits are per precision ('fp32', 'fp16', 'int8') and may be overridden per format
('onnx-int8=1.5'); a drop is measured in mAP points (1 point = 0.01 mAP)::

    cfg = GateConfig(max_drop=parse_gate("fp16=1.0,int8=2.0"))
    decisions = evaluate_gate({"mAP50-95": 0.512}, {"onnx-int8": {"mAP50-95": 0.497}}, cfg)
    enforce(decisions)   # raises GateFailed: onnx-int8: mAP50-95 dropped 1.5 points ... limit 1.0

The pipeline's export step fails on :class:`~detpipe.errors.GateFailed`, so a bad engine
never reaches the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from detpipe.errors import GateFailed, InvalidInput

PRECISION_OF_FORMAT = {
    "onnx": "fp32",
    "onnx-int8": "int8",
    "engine-fp16": "fp16",
    "engine-int8": "int8",
}
DEFAULT_MAX_DROP = {"fp32": 0.5, "fp16": 1.0, "int8": 2.0}
METRICS = ("mAP50-95", "mAP50")


def parse_gate(text: str) -> dict[str, float]:
    """Parse ``'fp16=1.0,int8=2.0'`` (keys: a precision or a format name; values: points >= 0).

    Raises:
        InvalidInput: a malformed entry, an unknown key or a negative limit.
    """
    out: dict[str, float] = {}
    known = set(DEFAULT_MAX_DROP) | set(PRECISION_OF_FORMAT)
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise InvalidInput(
                f"--gate {text!r}: expected KEY=POINTS with KEY one of "
                f"{', '.join(sorted(known))}, got {item!r}"
            )
        try:
            limit = float(value)
        except ValueError:
            raise InvalidInput(f"--gate {text!r}: {value!r} is not a number") from None
        if not limit >= 0:
            raise InvalidInput(f"--gate {text!r}: limits are mAP points >= 0, got {value}")
        out[key] = limit
    if not out:
        raise InvalidInput(f"--gate {text!r}: no limits given")
    return out


@dataclass(frozen=True)
class GateConfig:
    """Gate settings.

    Attributes:
        max_drop: allowed drop in mAP points by precision and/or format; formats override
            precisions; missing precisions use :data:`DEFAULT_MAX_DROP`.
        metric: the metric gated on ('mAP50-95' or 'mAP50').
        enabled: False records the decisions without failing.
    """

    max_drop: Mapping[str, float] = field(default_factory=dict)
    metric: str = "mAP50-95"
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise InvalidInput(f"gate metric {self.metric!r}: expected one of {', '.join(METRICS)}")

    def limit_for(self, fmt: str) -> float:
        """The allowed drop (points) for format ``fmt``."""
        if fmt in self.max_drop:
            return float(self.max_drop[fmt])
        precision = PRECISION_OF_FORMAT.get(fmt, "fp32")
        return float(self.max_drop.get(precision, DEFAULT_MAX_DROP[precision]))


@dataclass(frozen=True)
class GateDecision:
    """One format's verdict."""

    format: str
    metric: str
    baseline: float
    value: float
    drop_points: float
    max_drop_points: float
    passed: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def reason(self) -> str:
        return (
            f"{self.format}: {self.metric} dropped {self.drop_points:.2f} points "
            f"({100 * self.baseline:.2f} -> {100 * self.value:.2f}), limit {self.max_drop_points:.2f}"
        )


def evaluate_gate(
    baseline: Mapping[str, float], results: Mapping[str, Mapping[str, float]], cfg: GateConfig
) -> list[GateDecision]:
    """Compare each format's metrics with the PyTorch baseline.

    Args:
        baseline: the PyTorch model's metrics (fractions in [0, 1]).
        results: format name -> its metrics on the same val set with the same evaluator.
        cfg: the limits.

    Returns:
        One decision per format, in ``results`` order. A NaN metric fails.
    """
    base = float(baseline[cfg.metric])
    decisions = []
    for fmt, metrics in results.items():
        value = float(metrics[cfg.metric])
        drop = 100.0 * (base - value)
        limit = cfg.limit_for(fmt)
        passed = bool(drop <= limit + 1e-9)  # False for NaN
        decisions.append(GateDecision(fmt, cfg.metric, base, value, drop, limit, passed))
    return decisions


def gate_from_report(report: Mapping[str, object], cfg: GateConfig) -> list[GateDecision]:
    """Re-judge an ``export_report.json`` with the limits of ``cfg`` (the pipeline's gate step).

    Raises:
        GateFailed: the report holds no accuracy evaluation, so nothing can pass the gate.
    """
    accuracy = report.get("accuracy")
    if not isinstance(accuracy, Mapping) or not accuracy.get("evaluated"):
        raise GateFailed("accuracy gate failed: the export was not evaluated on a val set")
    return evaluate_gate(accuracy["pytorch"], accuracy["formats"], cfg)


def enforce(decisions: list[GateDecision], cfg: GateConfig | None = None) -> None:
    """Raise :class:`GateFailed` naming every failing format (unless the gate is disabled)."""
    failed = [d for d in decisions if not d.passed]
    if failed and (cfg is None or cfg.enabled):
        raise GateFailed("accuracy gate failed: " + "; ".join(d.reason() for d in failed))
