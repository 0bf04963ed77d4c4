"""The accuracy gate: an exported artifact may lose at most N mAP points against PyTorch.

Limits are per precision ('fp32', 'fp16', 'int8') and may be overridden per format
('onnx-int8=1.5'); a drop is measured in mAP points (1 point = 0.01 mAP)::

    cfg = GateConfig(max_drop=parse_gate("fp16=1.0,int8=2.0"))
    decisions = evaluate_gate({"mAP50-95": 0.512}, {"onnx-int8": {"mAP50-95": 0.497}}, cfg)
    enforce(decisions)   # raises GateFailed: onnx-int8: mAP50-95 dropped 1.5 points ... limit 1.0

Two more rules guard a release: an absolute floor (``min_map``: a model that learned
nothing is refused however little its exports lose against it) and completeness (a
requested format without an accuracy result, e.g. an engine that was not built, fails
unless ``allow_missing``).

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

DEFAULT_MIN_MAP = 0.01
"""The floor (gated metric, fraction): 1 point of COCO mAP50-95. A detector that learned
nothing scores 0.000-0.001 (the quick profile on a 128-image COCO subset scored 0.000 in
issue 11); anything worth deploying scores far more (YOLOv8n: 37.3 on COCO val2017 per
ultralytics' model card; the conftest's pico model 0.27 on synthetic shapes). So 0.01 only
stops models that learned nothing, never a weak but real one."""

FLOOR_HINT = (
    "the model learned (almost) nothing: train longer (more epochs), on more data (a larger "
    "fraction or the full dataset) or from pretrained weights (--pretrained); lower the floor "
    "(--min-map / min_map, a mAP fraction: 0.01 = 1 point) only for smoke tests"
)


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
        min_map: every format must score at least this (``metric``, a fraction in [0, 1]).
        allow_missing: a requested format without an accuracy result passes (recorded).
    """

    max_drop: Mapping[str, float] = field(default_factory=dict)
    metric: str = "mAP50-95"
    enabled: bool = True
    min_map: float = DEFAULT_MIN_MAP
    allow_missing: bool = False

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise InvalidInput(f"gate metric {self.metric!r}: expected one of {', '.join(METRICS)}")
        if not 0 <= self.min_map <= 1:
            raise InvalidInput(f"--min-map {self.min_map}: a mAP fraction in [0, 1] (0.01 = 1 point)")

    def limit_for(self, fmt: str) -> float:
        """The allowed drop (points) for format ``fmt``."""
        if fmt in self.max_drop:
            return float(self.max_drop[fmt])
        precision = PRECISION_OF_FORMAT.get(fmt, "fp32")
        return float(self.max_drop.get(precision, DEFAULT_MAX_DROP[precision]))


@dataclass(frozen=True)
class GateDecision:
    """One format's verdict.

    ``value`` and ``drop_points`` are None for a format with no accuracy result, whose
    ``missing`` says why (not built, skipped, failed).
    """

    format: str
    metric: str
    baseline: float
    value: float | None
    drop_points: float | None
    max_drop_points: float
    passed: bool
    min_value: float = 0.0
    missing: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def below_floor(self) -> bool:
        return self.value is not None and not self.value >= self.min_value

    def reason(self) -> str:
        if self.value is None or self.drop_points is None:
            return (
                f"{self.format}: requested but has no accuracy result ({self.missing}); "
                "--allow-missing accepts that"
            )
        dropped = (
            f"{self.format}: {self.metric} dropped {self.drop_points:.2f} points "
            f"({100 * self.baseline:.2f} -> {100 * self.value:.2f}), limit {self.max_drop_points:.2f}"
        )
        floor = f"below the floor of {100 * self.min_value:.2f} points"  # points, like every figure here
        if not self.below_floor:
            return dropped
        if self.drop_points <= self.max_drop_points + 1e-9:
            return f"{self.format}: {self.metric} {100 * self.value:.2f} points is {floor}"
        return f"{dropped}, and is {floor}"


def missing_formats(
    formats: Mapping[str, Mapping[str, object]], results: Mapping[str, object]
) -> dict[str, str]:
    """Requested formats of an export report's ``formats`` block that have no accuracy result.

    Returns:
        format -> why (``skipped: <reason>`` or its status).
    """
    out = {}
    for fmt, entry in formats.items():
        if entry.get("requested") and fmt not in results:
            status = entry.get("status", "missing")
            out[fmt] = f"{status}: {entry['reason']}" if entry.get("reason") else str(status)
    return out


def evaluate_gate(
    baseline: Mapping[str, float],
    results: Mapping[str, Mapping[str, float]],
    cfg: GateConfig,
    missing: Mapping[str, str] | None = None,
) -> list[GateDecision]:
    """Compare each format's metrics with the PyTorch baseline and the floor.

    Args:
        baseline: the PyTorch model's metrics (fractions in [0, 1]).
        results: format name -> its metrics on the same val set with the same evaluator.
        cfg: the limits.
        missing: requested formats without a result -> why (:func:`missing_formats`).

    Returns:
        One decision per format, in ``results`` order, then the missing ones. A NaN metric fails.
    """
    base = float(baseline[cfg.metric])
    decisions = []
    for fmt, metrics in results.items():
        value = float(metrics[cfg.metric])
        drop = 100.0 * (base - value)
        limit = cfg.limit_for(fmt)
        passed = bool(drop <= limit + 1e-9 and value >= cfg.min_map)  # False for NaN
        decisions.append(GateDecision(fmt, cfg.metric, base, value, drop, limit, passed, cfg.min_map))
    for fmt, why in (missing or {}).items():
        decisions.append(
            GateDecision(
                fmt, cfg.metric, base, None, None, cfg.limit_for(fmt), cfg.allow_missing, cfg.min_map, why
            )
        )
    return decisions


def gate_from_report(report: Mapping[str, object], cfg: GateConfig) -> list[GateDecision]:
    """Re-judge an ``export_report.json`` with the limits of ``cfg`` (the pipeline's gate step).

    Raises:
        GateFailed: the report holds no accuracy evaluation, so nothing can pass the gate.
    """
    accuracy = report.get("accuracy")
    if not isinstance(accuracy, Mapping) or not accuracy.get("evaluated"):
        raise GateFailed("accuracy gate failed: the export was not evaluated on a val set")
    formats = report.get("formats")
    missing = missing_formats(formats, accuracy["formats"]) if isinstance(formats, Mapping) else {}
    return evaluate_gate(accuracy["pytorch"], accuracy["formats"], cfg, missing)


def enforce(decisions: list[GateDecision], cfg: GateConfig | None = None) -> None:
    """Raise :class:`GateFailed` naming every failing format (unless the gate is disabled).

    A format below the floor adds :data:`FLOOR_HINT`: what to change so the model learns.
    """
    failed = [d for d in decisions if not d.passed]
    if failed and (cfg is None or cfg.enabled):
        hint = f" -- {FLOOR_HINT}" if any(d.below_floor for d in failed) else ""
        raise GateFailed("accuracy gate failed: " + "; ".join(d.reason() for d in failed) + hint)
