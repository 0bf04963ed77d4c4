"""The training configuration: one frozen dataclass, its flags, and the hyperparameter file.

Precedence, lowest first: ultralytics' defaults (repeated in :class:`TrainConfig`), a
hyperparameter YAML (``--config hyp.yaml``), then command-line flags. The YAML may hold the
first-class hyperparameters below and any other ultralytics train argument (``scale``,
``fliplr``, ``weight_decay`` ...); so may ``--set KEY=VALUE``::

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--data", "d.yaml", "--model", "yolo12n.yaml",
                                              "--out", "runs/t", "--config", "hyp.yaml", "--epochs", "3"]))
    cfg.to_argv()   # the same run as flags, for torchrun workers and PyTorchJob pods

Batch size is *global*: a run with ``--batch 256`` on 16 processes uses 16 images per process
and step, so changing the number of GPUs keeps the optimization the same.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from detpipe.device import DEVICE_FORMS, parse_device
from detpipe.errors import InvalidInput
from detpipe.overrides import format_set, parse_set

OPTIMIZERS = ("auto", "SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp")
CACHE_MODES = ("false", "ram", "disk")

# Keys detpipe sets itself: a hyperparameter file or --set may not override them.
RESERVED_KEYS = frozenset(
    {
        "model",
        "data",
        "device",
        "pretrained",
        "resume",
        "project",
        "name",
        "save_dir",
        "exist_ok",
        "mode",
        "task",
    }
)


@dataclass(frozen=True)
class Hyperparameter:
    """One first-class hyperparameter: an ultralytics train argument with its own flag.

    Attributes:
        name: the ultralytics argument name (also the YAML key and TrainConfig field).
        kind: ``int``, ``float``, ``bool`` or ``str``.
        help: one line for ``--help``.
        low: smallest allowed value (numbers).
        high: largest allowed value (numbers), ``None`` for no limit.
        choices: allowed values (strings).
    """

    name: str
    kind: type
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter("epochs", int, "epochs to train", low=1),
    Hyperparameter("patience", int, "early stop after N epochs without val improvement (0: never)", low=0),
    Hyperparameter("imgsz", int, "train/val image size in px (rounded to a multiple of the stride)", low=32),
    Hyperparameter("batch", int, "GLOBAL batch size, split evenly over all processes", low=1),
    Hyperparameter("optimizer", str, "optimizer ('auto' picks from the iteration count)", choices=OPTIMIZERS),
    Hyperparameter("lr0", float, "initial learning rate", low=1e-12),
    Hyperparameter("lrf", float, "final learning rate as a fraction of lr0", low=1e-12),
    Hyperparameter("warmup_epochs", float, "warmup epochs (fractions allowed)", low=0),
    Hyperparameter("hsv_h", float, "HSV hue augmentation (fraction)", low=0, high=1),
    Hyperparameter("hsv_s", float, "HSV saturation augmentation (fraction)", low=0, high=1),
    Hyperparameter("hsv_v", float, "HSV value augmentation (fraction)", low=0, high=1),
    Hyperparameter("mosaic", float, "mosaic probability", low=0, high=1),
    Hyperparameter("mixup", float, "mixup probability", low=0, high=1),
    Hyperparameter("copy_paste", float, "copy-paste probability", low=0, high=1),
    Hyperparameter("close_mosaic", int, "turn mosaic off for the last N epochs", low=0),
    Hyperparameter("amp", bool, "mixed precision on CUDA (always off on CPU)"),
    Hyperparameter("seed", int, "random seed", low=0),
    Hyperparameter("cache", str, "cache decoded images", choices=CACHE_MODES),
    Hyperparameter("workers", int, "dataloader workers per process (0 on CPU)", low=0),
    Hyperparameter("plots", bool, "write training plots (label/batch images, curves)"),
)
HYPERPARAMETER_NAMES = tuple(h.name for h in HYPERPARAMETERS)


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        data: ultralytics dataset YAML (``path``/``train``/``val``/``names``); ``train`` may be
            a ``train2017_<pct>_<strategy>.txt`` subset list.
        model: a YOLO config name (``yolo12n.yaml``; v8, v9, v10, 11 and 12 at every scale),
            a local model YAML, or weights (``.pt``) as a local path or store URI (``s3://``).
        out: run directory: ``weights/{best,last}.pt``, ``results.csv``, ``train_summary.json``.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, or GPU indices ``0,1``.
        pretrained: weights (local path or store URI) to initialize a YAML architecture;
            ``None`` trains from scratch (a ``.pt`` ``model`` always starts from its weights).
        resume: ``None``; ``"auto"`` (``out/weights/last.pt``); a local checkpoint; or a store
            URI prefix (``s3://bucket/ckpt/run1``): continue from its ``last.pt`` when there is
            one, else start fresh, and upload checkpoints there after every epoch.
        extra: other ultralytics train arguments (from the YAML or ``--set``), e.g. ``scale``.
        (the rest): the first-class hyperparameters, named as in ultralytics.
    """

    data: str
    model: str
    out: str
    epochs: int = 100
    patience: int = 100
    imgsz: int = 640
    batch: int = 16
    optimizer: str = "auto"
    lr0: float = 0.01
    lrf: float = 0.01
    warmup_epochs: float = 3.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    mosaic: float = 1.0
    mixup: float = 0.0
    copy_paste: float = 0.0
    close_mosaic: int = 10
    amp: bool = True
    seed: int = 0
    cache: str = "false"
    workers: int = 8
    plots: bool = True
    device: str = "auto"
    pretrained: str | None = None
    resume: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("data", "model", "out"):
            if not str(getattr(self, name)).strip():
                raise InvalidInput(f"--{name} must not be empty")
        if not str(self.data).endswith((".yaml", ".yml")):
            raise InvalidInput(f"--data {self.data}: expected an ultralytics dataset YAML (.yaml)")
        for hp in HYPERPARAMETERS:
            object.__setattr__(self, hp.name, _check_value(hp, getattr(self, hp.name)))
        parse_device(self.device)
        object.__setattr__(self, "extra", dict(check_extra(self.extra)))

    def hyperparameters(self) -> dict[str, Any]:
        """The first-class hyperparameters and the extra ultralytics arguments, as a dict."""
        return {**{name: getattr(self, name) for name in HYPERPARAMETER_NAMES}, **self.extra}

    def ultralytics_overrides(self) -> dict[str, Any]:
        """Train arguments for ultralytics (model, device, save_dir and resume are set by the run)."""
        hyp = self.hyperparameters()
        hyp["cache"] = False if self.cache == "false" else self.cache
        return {**hyp, "data": str(self.data), "pretrained": self.pretrained or False}

    def to_argv(self) -> list[str]:
        """This configuration as ``detpipe train`` / worker flags (every value explicit)."""
        argv = ["--data", str(self.data), "--model", str(self.model), "--out", str(self.out)]
        for hp in HYPERPARAMETERS:
            value = getattr(self, hp.name)
            if hp.kind is bool:
                argv.append(hp.flag if value else "--no-" + hp.flag[2:])
            else:
                argv += [hp.flag, str(value)]
        argv += ["--device", self.device]
        if self.pretrained:
            argv += ["--pretrained", self.pretrained]
        if self.resume:
            argv += ["--resume", self.resume]
        for key, value in sorted(self.extra.items()):
            argv += ["--set", format_set(key, value)]
        return argv

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view of every field."""
        out = asdict(self)
        out["extra"] = dict(self.extra)
        return out


def _check_value(hp: Hyperparameter, value: Any) -> Any:
    """Coerce ``value`` to the hyperparameter's type and check its range; InvalidInput if not."""
    where = f"{hp.name}={value!r}"
    if hp.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise InvalidInput(f"{where}: expected true or false")
    if hp.kind is str:
        text = "false" if value is False else "ram" if value is True and hp.name == "cache" else str(value)
        lowered = {c.lower(): c for c in hp.choices}
        if hp.choices and text.lower() not in lowered:
            raise InvalidInput(f"{where}: expected one of {', '.join(hp.choices)}")
        return lowered.get(text.lower(), text)
    if isinstance(value, bool):
        raise InvalidInput(f"{where}: expected a number")
    try:
        number = hp.kind(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: expected {'an integer' if hp.kind is int else 'a number'}") from None
    if hp.kind is int and isinstance(value, float) and number != value:
        raise InvalidInput(f"{where}: expected an integer")
    if hp.low is not None and number < hp.low:
        raise InvalidInput(f"{where}: must be >= {hp.low:g}")
    if hp.high is not None and number > hp.high:
        raise InvalidInput(f"{where}: must be <= {hp.high:g}")
    return number


@functools.cache
def ultralytics_train_keys() -> frozenset[str]:
    """Every argument in ultralytics' default.yaml (read from the package, without importing it)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInput("ultralytics is not installed")
    import yaml  # here, not at the top: `detpipe train --help` imports this module

    default = Path(next(iter(spec.submodule_search_locations))) / "cfg" / "default.yaml"
    return frozenset(yaml.safe_load(default.read_text(encoding="utf-8")))


def check_extra(extra: Mapping[str, Any]) -> Mapping[str, Any]:
    """Check that every extra key is an ultralytics train argument detpipe does not set itself."""
    known = ultralytics_train_keys()
    for key in extra:
        if key in HYPERPARAMETER_NAMES:
            raise InvalidInput(
                f"{key}: a first-class hyperparameter, set it directly (--{key.replace('_', '-')})"
            )
        if key in RESERVED_KEYS:
            raise InvalidInput(f"{key}: set by detpipe itself, not allowed in a hyperparameter file or --set")
        if key not in known:
            raise InvalidInput(f"{key}: not an ultralytics train argument")
    return extra


def load_hyp_file(path: str | Path) -> dict[str, Any]:
    """Read a hyperparameter YAML: a mapping of ultralytics train arguments.

    Raises:
        InvalidInput: missing or unreadable file, not a mapping, or an unknown/reserved key.
    """
    import yaml

    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"--config {path}: cannot read: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InvalidInput(f"--config {path}: not valid YAML{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InvalidInput(
            f"--config {path}: expected a mapping of hyperparameters, got {type(loaded).__name__}"
        )
    for key in loaded:
        if key in RESERVED_KEYS:
            hint = f" (use --{key})" if key in ("model", "data", "device", "pretrained", "resume") else ""
            raise InvalidInput(f"--config {path}: {key!r} is set by detpipe itself{hint}")
        if key not in HYPERPARAMETER_NAMES and key not in ultralytics_train_keys():
            raise InvalidInput(f"--config {path}: {key!r} is not an ultralytics train argument")
    return loaded


def build_config(
    data: str,
    model: str,
    out: str,
    *,
    hyp_file: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    sets: Mapping[str, Any] | None = None,
    device: str = "auto",
    pretrained: str | None = None,
    resume: str | None = None,
) -> TrainConfig:
    """Merge defaults < hyperparameter file < ``--set`` < flags into a :class:`TrainConfig`.

    Args:
        data, model, out, device, pretrained, resume: as in :class:`TrainConfig`.
        hyp_file: optional hyperparameter YAML.
        flags: first-class hyperparameters given on the command line (``None`` values ignored).
        sets: other ultralytics arguments (``--set``); first-class names are allowed too.

    Raises:
        InvalidInput: any invalid value or key.
    """
    merged: dict[str, Any] = {}
    if hyp_file is not None:
        merged.update(load_hyp_file(hyp_file))
    merged.update(sets or {})
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    first = {k: merged.pop(k) for k in list(merged) if k in HYPERPARAMETER_NAMES}
    return TrainConfig(
        data=str(data),
        model=str(model),
        out=str(out),
        device=device,
        pretrained=pretrained,
        resume=resume,
        extra=merged,
        **first,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the run and hyperparameter flags (shared by ``detpipe train`` and the torchrun worker)."""
    run = parser.add_argument_group("run")
    run.add_argument("--data", required=True, help="ultralytics dataset YAML (e.g. from 'detpipe data yolo')")
    run.add_argument(
        "--model",
        required=True,
        help="yolov8n.yaml ... yolo12x.yaml (scratch), yolov8-pico.yaml (detpipe's 1/8-width YOLOv8 "
        "for CPU demos), a local model YAML, or weights: a local .pt or s3:// URI. Nothing is ever "
        "downloaded from a hub.",
    )
    run.add_argument("--out", required=True, help="run directory (weights/, results.csv, train_summary.json)")
    run.add_argument(
        "--device",
        default="auto",
        help=f"{DEVICE_FORMS} (default: auto = every visible GPU, else CPU)",
    )
    run.add_argument(
        "--pretrained",
        default=None,
        metavar="WEIGHTS",
        help="initialize a YAML model from weights (path or s3://)",
    )
    run.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CKPT",
        help="continue a run: bare --resume uses OUT/weights/last.pt; a path names a checkpoint; an "
        "s3:// (or file://) prefix continues from its last.pt if any, else starts fresh, and gets the "
        "checkpoints uploaded after every epoch (a preempted pod continues where it stopped)",
    )
    hyp = parser.add_argument_group("hyperparameters (override --config; defaults are ultralytics')")
    hyp.add_argument(
        "--config", default=None, metavar="HYP_YAML", help="hyperparameter YAML (ultralytics keys)"
    )
    hyp.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other ultralytics train argument, e.g. --set scale=0.9 (repeatable)",
    )
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for hp in HYPERPARAMETERS:
        flags = [hp.flag] if hp.flag == f"--{hp.name}" else [hp.flag, f"--{hp.name}"]
        text = f"{hp.help} (default: {defaults[hp.name]})"
        if hp.kind is bool:
            hyp.add_argument(
                *flags, dest=hp.name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        elif hp.choices:
            hyp.add_argument(*flags, dest=hp.name, choices=hp.choices, default=None, help=text)
        else:
            hyp.add_argument(*flags, dest=hp.name, type=hp.kind, default=None, help=text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build the :class:`TrainConfig` from flags added by :func:`add_arguments`."""
    return build_config(
        args.data,
        args.model,
        args.out,
        hyp_file=args.config,
        flags={hp.name: getattr(args, hp.name) for hp in HYPERPARAMETERS},
        sets=parse_set(args.set),
        device=args.device,
        pretrained=args.pretrained,
        resume=args.resume,
    )
