"""Load an ultralytics YOLO detection model for export, evaluation and benchmarking.

One loader serves the export stage, the PyTorch reference predictor and the PyTorch
benchmark backend, so all three see the same network::

    loaded = load_detection_model("runs/train/weights/best.pt")
    loaded.model, loaded.names, loaded.stride
    export_model = prepare_for_export(loaded.model, imgsz=(640, 640), dynamic=False)

Weights (``.pt``) are loaded from the local file only; a model YAML (``yolov8n.yaml``)
builds a randomly initialized network (handy for tests and latency benchmarks, useless
for accuracy). Nothing is downloaded: ultralytics is put in offline mode first.
"""

from __future__ import annotations

import copy
import logging
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from detpipe.errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A YOLO detection model in eval mode (FP32, CPU) and what the runtimes need to know about it."""

    model: Any  # ultralytics.nn.tasks.DetectionModel
    names: dict[int, str]
    stride: int
    source: Path
    train_imgsz: int | None  # the imgsz it was trained at, when the checkpoint says so

    @property
    def num_classes(self) -> int:
        return len(self.names)


def _offline() -> None:
    from detpipe.ultralytics_env import configure_offline

    configure_offline()


def load_detection_model(weights: str | Path) -> LoadedModel:
    """Load a YOLO detection model from a local ``.pt`` checkpoint or a model YAML.

    Args:
        weights: a local ultralytics checkpoint (``best.pt``) or a model config (``yolov8n.yaml``,
            resolved by ultralytics among its bundled configs when not a file).

    Returns:
        The model in eval mode, FP32 on the CPU, with gradients disabled.

    Raises:
        InvalidInput: the file is missing, not an ultralytics checkpoint, or not a detection model.
    """
    _offline()
    import torch

    path = Path(weights)
    suffix = path.suffix.lower()
    train_imgsz = None
    if suffix in (".yaml", ".yml"):
        from ultralytics.nn.tasks import DetectionModel

        try:
            model = DetectionModel(str(path), verbose=False)
        except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
            raise InvalidInput(f"{path}: not a usable YOLO model config ({e})") from None
        log.warning("%s: a model config, not trained weights: the network is randomly initialized", path)
    elif suffix == ".pt":
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
        from ultralytics.nn.tasks import load_checkpoint

        try:
            model, ckpt = load_checkpoint(str(path), device="cpu", fuse=False)
        except Exception as e:  # torch.load raises many types for a bad file
            raise InvalidInput(f"{path}: not an ultralytics checkpoint ({type(e).__name__}: {e})") from None
        args = (ckpt or {}).get("train_args") or {}
        imgsz = args.get("imgsz")
        train_imgsz = int(imgsz) if isinstance(imgsz, int) else None
    else:
        raise InvalidInput(f"{path}: expected a .pt checkpoint or a model .yaml")
    if getattr(model, "task", "detect") != "detect":
        raise InvalidInput(f"{path}: a {model.task} model; only detection models are supported")
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad = False
    names = getattr(model, "names", None) or {i: str(i) for i in range(model.model[-1].nc)}
    if isinstance(names, list | tuple):
        names = dict(enumerate(names))
    stride = int(max(model.stride.tolist())) if isinstance(model.stride, torch.Tensor) else int(model.stride)
    return LoadedModel(
        model=model,
        names={int(k): str(v) for k, v in names.items()},
        stride=stride,
        source=path,
        train_imgsz=train_imgsz,
    )


def prepare_for_export(model: Any, imgsz: tuple[int, int], dynamic: bool = False, max_det: int = 300) -> Any:
    """A copy of ``model`` set up the way ultralytics' own exporter sets it up for ONNX.

    BatchNorm is fused into the convolutions, the Detect head runs in export mode and
    returns one tensor ``(B, 4 + nc, anchors)``: boxes as centre-x, centre-y, width, height
    in input pixels, then per-class sigmoid scores. NMS-free (end-to-end) heads are switched
    to their one-to-many branch so every format gets the same raw output and the same NMS.
    The DFL decode takes its softmax over the last axis (:func:`_dfl_forward`): the same
    numbers, but onnxruntime's CPU Softmax on an inner axis transposes internally and cost
    8 ms of a 60 ms INT8 YOLOv8n run at 640 px.

    Args:
        model: a loaded DetectionModel (not modified).
        imgsz: (height, width) of the export input.
        dynamic: whether the batch axis will be dynamic.
        max_det: detections kept by end-to-end heads (unused for raw outputs).

    Returns:
        The prepared copy, in eval mode.
    """
    from ultralytics.nn.modules import DFL, C2f, Detect

    model = copy.deepcopy(model)
    if hasattr(model, "end2end"):
        model.end2end = False
    model = model.fuse(verbose=False)
    model.eval()
    anchors = sum(int(imgsz[0] / s) * int(imgsz[1] / s) for s in model.stride.tolist())
    for m in model.modules():
        if isinstance(m, Detect):
            m.dynamic = dynamic
            m.export = True
            m.format = "onnx"
            m.max_det = min(max_det, anchors)
            m.xyxy = False
            m.shape = None
        elif isinstance(m, C2f):
            m.forward = m.forward_split  # Split instead of chunk: a cleaner graph, as ultralytics does
        elif isinstance(m, DFL):
            m.forward = types.MethodType(_dfl_forward, m)
    return model


def _dfl_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """ultralytics' ``DFL.forward`` with the softmax over the last axis (the bins).

    ``(B, 4 * c1, A)`` -> per side a softmax over its ``c1`` bins -> expected distance
    ``sum(p_i * i)``, ``(B, 4, A)``; the integral conv becomes a MatMul with its weights.
    """
    b, _, a = x.shape
    p = x.view(b, 4, self.c1, a).transpose(2, 3).softmax(-1)  # (B, 4, A, c1)
    return (p @ self.conv.weight.view(self.c1, 1)).view(b, 4, a)
