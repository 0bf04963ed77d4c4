"""``detpipe mine``: score an unlabeled pool with a model and pick the images worth labeling.

::

    summary = mine(MineConfig(pool="runs/pool", weights=Path("best.pt"), budget=100,
                              out=Path("runs/mine"), strategy="uncertainty", seed=0))

The pool is scored in batches (a progress bar) with detpipe's own pre/post-processing
(:mod:`detpipe.runtime`: letterbox, NMS, the same as evaluation and serving), PyTorch
weights (``.pt``) or an exported ONNX model. ``diversity`` needs the PyTorch weights: it pools
the backbone's last feature map. Writes to ``out``:

- ``selection.json``: ``{"strategy", "seed", "budget", "pool", "weights", "picks": [{"image",
  "score", "strategy", "rank"}]}`` (rank 1 = the most informative);
- ``preannotations.json``: COCO detections of the model on the picks (``images`` named as in
  the pool, ``categories`` from the model's names, ``annotations`` with ``bbox`` xywh and
  ``score``): what CVAT and Label Studio import as pre-annotations;
- ``contact_sheet.png``: the picks with their boxes, in rank order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from detpipe.errors import InvalidInput
from detpipe.io import write_json
from detpipe.mine.pool import PoolImage, exclude_labeled, list_pool
from detpipe.mine.scores import class_entropy, k_center_greedy, uncertainty
from detpipe.mine.strategy import STRATEGIES
from detpipe.runtime.image import preprocess
from detpipe.runtime.nms import Detections, postprocess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MineConfig:
    """One ``detpipe mine``.

    Attributes:
        pool: a directory of images, or a store prefix (``s3://bucket/payloads/<model>``).
        weights: PyTorch weights (``.pt``) or an exported ONNX model.
        budget: how many images to pick.
        out: output directory.
        strategy: one of :data:`STRATEGIES`.
        seed: the random strategy's and diversity's first pick's seed.
        exclude: a COCO file whose images are labeled already (skipped).
        batch: images per inference batch.
        imgsz: input size for PyTorch weights (default: the size they were trained at).
        threads: CPU threads of the runtime.
        progress: show a progress bar.
    """

    pool: str
    weights: Path
    budget: int
    out: Path
    strategy: str = "uncertainty"
    seed: int = 0
    exclude: Path | None = None
    batch: int = 16
    imgsz: int | None = None
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InvalidInput(f"--strategy {self.strategy!r}: one of {', '.join(STRATEGIES)}")
        if self.budget < 1 or self.batch < 1:
            raise InvalidInput("--budget and --batch: at least 1")
        if not self.weights.is_file():
            raise InvalidInput(f"--weights {self.weights}: no such file")
        if self.strategy == "diversity" and self.weights.suffix != ".pt":
            raise InvalidInput(
                "--strategy diversity pools backbone features: give the PyTorch weights (.pt), "
                f"not {self.weights.name}"
            )


@dataclass
class _Scored:
    image: PoolImage
    dets: Detections
    size: tuple[int, int]  # (height, width)
    score: float = 0.0
    feature: np.ndarray | None = None


def mine(cfg: MineConfig) -> dict[str, Any]:
    """Score the pool, pick ``cfg.budget`` images and write the outputs (module docstring).

    Raises:
        InvalidInput: bad options, an empty pool, an unreadable image.
    """
    images = list_pool(cfg.pool, cache=cfg.out / "pool-cache")
    if cfg.exclude is not None:
        images = exclude_labeled(images, cfg.exclude)
    if not images:
        raise InvalidInput(f"--pool {cfg.pool}: every image is labeled already (--exclude {cfg.exclude})")
    predictor, backbone = _load(cfg)
    scored = _score(cfg, images, predictor, backbone)
    picks = _pick(cfg, scored)
    cfg.out.mkdir(parents=True, exist_ok=True)
    selection = {
        "strategy": cfg.strategy,
        "seed": cfg.seed,
        "budget": cfg.budget,
        "pool": cfg.pool,
        "pool_images": len(images),
        "weights": str(cfg.weights),
        "picks": [
            {"image": s.image.name, "score": round(s.score, 6), "strategy": cfg.strategy, "rank": i + 1}
            for i, s in enumerate(picks)
        ],
    }
    write_json(cfg.out / "selection.json", selection)
    write_json(cfg.out / "preannotations.json", preannotations(picks, predictor.names))
    _contact_sheet(picks, predictor.names, cfg.out / "contact_sheet.png")
    log.info("picked %d of %d images (%s) -> %s", len(picks), len(images), cfg.strategy, cfg.out)
    return {k: v for k, v in selection.items() if k != "picks"} | {"picked": len(picks), "out": str(cfg.out)}


def _load(cfg: MineConfig) -> tuple[Any, list[np.ndarray]]:
    """The predictor and, for diversity, a list the backbone hook appends pooled features to."""
    from detpipe.runtime.backends import load_predictor, model_file

    model = model_file(cfg.weights)
    if model.kind == "onnx":
        return load_predictor(model, "onnxruntime", threads=cfg.threads), []
    if model.kind != "pytorch":
        raise InvalidInput(f"--weights {cfg.weights}: a .pt checkpoint or an .onnx model")
    if cfg.imgsz is None:
        from detpipe.evaluate.stage import train_imgsz

        imgsz = train_imgsz(cfg.weights)
    else:
        imgsz = cfg.imgsz
    predictor = load_predictor(model, "pytorch", imgsz=(imgsz, imgsz), threads=cfg.threads)
    features: list[np.ndarray] = []
    if cfg.strategy == "diversity":
        net = predictor.model
        last = net.model[len(net.yaml["backbone"]) - 1]  # ultralytics: the backbone's last layer
        last.register_forward_hook(
            lambda _m, _i, out: features.append(out.mean(dim=(2, 3)).float().cpu().numpy())
        )
    return predictor, features


def _score(
    cfg: MineConfig, images: list[PoolImage], predictor: Any, backbone: list[np.ndarray]
) -> list[_Scored]:
    import cv2

    out: list[_Scored] = []
    step = predictor.batch or cfg.batch
    bar = tqdm(total=len(images), desc=f"mine ({cfg.strategy})", unit="img", disable=not cfg.progress)
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        pixels = []
        for im in chunk:
            img = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
            if img is None:
                raise InvalidInput(f"{im.path}: not an image cv2 can read")
            pixels.append(img)
        x, lbs = preprocess(pixels, predictor.imgsz, predictor.batch)
        raw = np.asarray(predictor.infer(x))
        dets = postprocess(raw, lbs, predictor.postprocess_cfg)
        feats = backbone.pop() if backbone else None
        for i, (im, det, img) in enumerate(zip(chunk, dets, pixels, strict=True)):
            s = _Scored(im, det, img.shape[:2], feature=feats[i] if feats is not None else None)
            if cfg.strategy == "uncertainty":
                s.score = uncertainty(det)
            elif cfg.strategy == "entropy":
                s.score = class_entropy(raw[i])
            out.append(s)
        bar.update(len(chunk))
    bar.close()
    return out


def _pick(cfg: MineConfig, scored: list[_Scored]) -> list[_Scored]:
    budget = min(cfg.budget, len(scored))
    if cfg.strategy == "random":
        order = np.random.default_rng(cfg.seed).permutation(len(scored))[:budget]
        for rank, i in enumerate(order):
            scored[i].score = 1.0 - rank / max(budget, 1)
        return [scored[i] for i in order]
    if cfg.strategy == "diversity":
        features = np.stack([s.feature for s in scored])
        picks, dists = k_center_greedy(features, budget, seed=cfg.seed)
        for i, d in zip(picks, dists, strict=True):
            scored[i].score = d
        return [scored[i] for i in picks]
    # highest score first; ties by name, so the same pool and model always pick the same images
    return sorted(scored, key=lambda s: (-s.score, s.image.name))[:budget]


def preannotations(picks: list[_Scored], names: dict[int, str]) -> dict[str, Any]:
    """COCO detections of the model on the picks (pre-annotations for a labeling tool)."""
    images, annotations = [], []
    for image_id, s in enumerate(picks, start=1):
        h, w = s.size
        images.append({"id": image_id, "file_name": s.image.name, "width": int(w), "height": int(h)})
        for box, conf, cls in zip(s.dets.boxes, s.dets.scores, s.dets.classes, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "score": round(float(conf), 5),
            })  # fmt: skip
    categories = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in sorted(names.items())]
    return {"images": images, "annotations": annotations, "categories": categories}


def _contact_sheet(picks: list[_Scored], names: dict[int, str], dest: Path, cols: int = 6) -> None:
    """The picks in rank order, each with its boxes, rank and score."""
    import cv2
    from matplotlib.figure import Figure

    from detpipe.io import write_bytes
    from detpipe.plotting import png_bytes

    cols = min(cols, len(picks))
    rows = -(-len(picks) // cols)
    fig = Figure(figsize=(2.2 * cols, 2.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (rank, s) in zip(axes.flat, enumerate(picks, start=1), strict=False):
        ax.imshow(cv2.cvtColor(cv2.imread(str(s.image.path)), cv2.COLOR_BGR2RGB))
        for box, cls in zip(s.dets.boxes, s.dets.classes, strict=True):
            x1, y1, x2, y2 = box
            ax.add_patch(_rect(x1, y1, x2 - x1, y2 - y1))
            ax.text(x1, y1, names.get(int(cls), str(cls)), fontsize=6, color="yellow", va="bottom")
        ax.set_title(f"#{rank} {s.score:.3f}\n{Path(s.image.name).name}", fontsize=7)
    write_bytes(dest, png_bytes(fig, dpi=100))


def _rect(x: float, y: float, w: float, h: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor="yellow", linewidth=1)
