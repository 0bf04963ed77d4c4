"""Which model a run starts from, resolved without the network.

``--model`` is one of:

* a built-in YOLO detection config, with its scale in the name: ``yolov8n.yaml`` ...
  ``yolo12x.yaml`` (the ``.yaml`` may be left out). ultralytics ships one YAML with a
  ``scales:`` table for v8, 11 and 12 and one file per scale for v9 and v10; both resolve to a
  file inside the installed ultralytics package, so nothing is fetched;
* a config detpipe ships in ``detpipe/train/configs`` (``yolov8-pico.yaml``: YOLOv8 at 1/8
  width, for CPU demos);
* a local model YAML (a custom architecture);
* weights: a local ``.pt`` file or a store URI (``s3://bucket/key.pt``, ``file://...``),
  downloaded through :mod:`detpipe.store`.

A bare ``yolo12n.pt`` that is not a local file is refused: ultralytics would download it
from GitHub, and detpipe never downloads weights from a hub::

    >>> resolve_model("yolo12n").name
    'yolo12n'
    >>> resolve_model("yolo12n.yaml").ultralytics_model
    'yolo12n.yaml'
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from detpipe.errors import InvalidInput

STORE_SCHEMES = ("s3://", "file://")
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
"""Model configs detpipe ships (found by file name, like the built-in ones)."""


@dataclass(frozen=True)
class Architecture:
    """A YOLO detection family as ultralytics ships it.

    Attributes:
        family: the name prefix, e.g. ``yolo12``.
        scales: the scale letters it has, smallest first.
        config: the config file below ``ultralytics/cfg/models``; ``{scale}`` is filled in for
            families with one file per scale.
    """

    family: str
    scales: tuple[str, ...]
    config: str

    def config_path(self, scale: str) -> Path:
        """The YAML inside the installed ultralytics package for ``scale``."""
        return ultralytics_models_dir() / self.config.format(scale=scale)


ARCHITECTURES: dict[str, Architecture] = {
    a.family: a
    for a in (
        Architecture("yolov8", ("n", "s", "m", "l", "x"), "v8/yolov8.yaml"),
        Architecture("yolov9", ("t", "s", "m", "c", "e"), "v9/yolov9{scale}.yaml"),
        Architecture("yolov10", ("n", "s", "m", "b", "l", "x"), "v10/yolov10{scale}.yaml"),
        Architecture("yolo11", ("n", "s", "m", "l", "x"), "11/yolo11.yaml"),
        Architecture("yolo12", ("n", "s", "m", "l", "x"), "12/yolo12.yaml"),
    )
}
_NAME_RE = re.compile(r"^(?P<family>yolov8|yolov9|yolov10|yolo11|yolo12)(?P<scale>[a-z]?)\Z")


@dataclass(frozen=True)
class ModelSource:
    """Where a run's model comes from.

    Attributes:
        text: what ``--model`` said.
        kind: ``"config"`` (train from scratch) or ``"weights"`` (start from a checkpoint).
        ultralytics_model: what to hand to ultralytics as ``model=``; for remote weights, the
            URI (the run downloads it first and passes the local copy).
        name: architecture name for the summary (``yolo12n``); ``None`` for weights until the
            checkpoint is read.
        remote: whether the file must come from the store.
        config_file: the resolved YAML file for configs (built-in or local).
    """

    text: str
    kind: str
    ultralytics_model: str
    name: str | None
    remote: bool = False
    config_file: Path | None = None


@functools.cache
def ultralytics_models_dir() -> Path:
    """``ultralytics/cfg/models`` of the installed package, found without importing it."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInput("ultralytics is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "cfg" / "models"


def is_store_uri(text: str) -> bool:
    """Whether ``text`` names an object in the artifact store (``s3://``, ``file://``)."""
    return str(text).lower().startswith(STORE_SCHEMES)


def shipped_configs() -> list[str]:
    """The config files detpipe ships, e.g. ``["yolov8-pico.yaml"]``."""
    return sorted(p.name for p in CONFIGS_DIR.glob("*.yaml"))


def builtin_names() -> list[str]:
    """Every built-in config name, e.g. ``["yolov8n", ..., "yolo12x"]``."""
    return [f"{a.family}{s}" for a in ARCHITECTURES.values() for s in a.scales]


def resolve_builtin(name: str) -> tuple[Architecture, str, Path]:
    """Resolve ``yolo12n`` (or ``yolo12n.yaml``) to (architecture, scale, YAML file).

    Raises:
        InvalidInput: an unknown family or scale, or a config missing from the package.
    """
    stem = name.removesuffix(".yaml").removesuffix(".yml")
    match = _NAME_RE.match(stem)
    if match is None:
        raise InvalidInput(f"{name}: not a built-in YOLO config (known: {', '.join(ARCHITECTURES)} + scale)")
    arch = ARCHITECTURES[match["family"]]
    scale = match["scale"]
    if scale not in arch.scales:
        raise InvalidInput(
            f"{name}: {'no scale given' if not scale else f'unknown scale {scale!r}'} for {arch.family} "
            f"(scales: {', '.join(arch.scales)}, e.g. {arch.family}{arch.scales[0]}.yaml)"
        )
    path = arch.config_path(scale)
    if not path.is_file():
        raise InvalidInput(f"{name}: {path} is missing from the installed ultralytics")
    declared = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("scales")
    if declared is not None and scale not in declared:
        raise InvalidInput(f"{name}: {path.name} declares scales {', '.join(declared)}, not {scale!r}")
    return arch, scale, path


def resolve_model(text: str) -> ModelSource:
    """Decide what ``--model`` names, without any network access.

    Raises:
        InvalidInput: an unknown config name, a missing local file, or hub weights.
    """
    text = str(text).strip()
    lowered = text.lower()
    if is_store_uri(text):
        if not lowered.endswith(".pt"):
            raise InvalidInput(f"--model {text}: a store URI must name a .pt weights file")
        return ModelSource(text, "weights", text, None, remote=True)
    path = Path(text).expanduser()
    if lowered.endswith(".pt"):
        if not path.is_file():
            raise InvalidInput(
                f"--model {text}: no such file. detpipe never downloads weights from a hub: give a local "
                f"path or an s3:// URI, or {path.stem}.yaml to train from scratch"
            )
        return ModelSource(text, "weights", str(path), None)
    if path.is_file() and lowered.endswith((".yaml", ".yml")):
        return ModelSource(text, "config", str(path), path.stem, config_file=path)
    if "/" in text or "\\" in text:
        raise InvalidInput(f"--model {text}: no such file")
    shipped = CONFIGS_DIR / (text if lowered.endswith((".yaml", ".yml")) else f"{text}.yaml")
    if shipped.is_file():
        return ModelSource(text, "config", str(shipped), shipped.stem, config_file=shipped)
    _, _, config = resolve_builtin(text)
    stem = text.removesuffix(".yaml").removesuffix(".yml")
    # ultralytics reads the scale from the file *name* it is given, so pass the scaled name:
    # it finds yolo12n.yaml -> cfg/models/12/yolo12.yaml inside its own package.
    return ModelSource(text, "config", f"{stem}.yaml", stem, config_file=config)
