"""The latency benchmark stage: every model x backend, infer-only and end-to-end, one report.

    cfg = BenchConfig(models=(Path("runs/export"), Path("best.pt")), out=Path("bench.json"),
                      schedule=Schedule(warmup_iters=20, iters=200), batch=1, threads=2)
    report = run_bench(cfg)     # writes bench.json, bench.md (table) and bench.png (plot)

    # or: detpipe bench --model runs/export --model best.pt --out bench.json --iters 200

Two timings per model, each after its own warm-up, with everything prepared up front:

- ``infer``: the network alone on a preprocessed, pinned NCHW batch (host in, host out);
- ``e2e``: JPEG decode (from bytes in memory) + letterbox/normalize + network + NMS and
  box rescaling, i.e. what a request costs.

On a Jetson, tegrastats is sampled during the infer run for mean power (W), images/s per
watt and a thermal-throttling flag; the power mode and clock state go into the metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detpipe.bench.core import PERCENTILE_METHOD, Schedule, latency_stats, measure
from detpipe.device import gpu_index, is_gpu, parse_device, resolve_device
from detpipe.errors import InvalidInput, Unavailable
from detpipe.io import write_json, write_text
from detpipe.runtime.backends import ModelFile, backends_for, load_predictor, model_file, ran_on

log = logging.getLogger(__name__)

MODES = ("infer", "e2e")
SPEEDUP_STAT = "p50"
"""The latency statistic speedups are ratios of (bench.json ``speedup_statistic``)."""


@dataclass(frozen=True)
class BenchConfig:
    """What to benchmark and how.

    Attributes:
        models: model files and/or export directories.
        out: the bench.json path; the table (.md) and plot (.png) go beside it.
        backends: backend names or 'auto' (see :mod:`detpipe.runtime.backends`).
        imgsz: input size (PyTorch models; exported files must match it when given).
        batch: images per query.
        schedule: warm-up and measurement lengths (the same for every model and mode).
        threads: CPU intra-op threads for onnxruntime-CPU and PyTorch-CPU (None: all cores).
        images: real images for the end-to-end run (a directory or list); default: one
            synthetic JPEG per batch slot.
        modes: 'infer' and/or 'e2e'.
        power_interval_ms: tegrastats interval on a Jetson.
        device: where ``auto`` backends run (:data:`detpipe.device.DEVICE_FORMS`; ``auto``: GPU 0
            when present, else CPU).
    """

    models: tuple[Path, ...]
    out: Path
    backends: tuple[str, ...] = ("auto",)
    imgsz: tuple[int, int] | None = None
    batch: int = 1
    schedule: Schedule = field(default_factory=Schedule)
    threads: int | None = None
    images: Path | None = None
    modes: tuple[str, ...] = MODES
    power_interval_ms: int = 100
    device: str = "auto"

    def __post_init__(self) -> None:
        parse_device(self.device)
        if not self.models:
            raise InvalidInput("no --model given")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise InvalidInput(f"--modes: expected infer and/or e2e, got {', '.join(self.modes)}")
        if self.batch < 1:
            raise InvalidInput("--batch must be >= 1")


def discover_models(paths: Sequence[str | Path]) -> list[ModelFile]:
    """Model files from files and directories (an export directory: its .onnx and .engine files).

    Raises:
        InvalidInput: a path does not exist or a directory holds no model.
    """
    out: list[ModelFile] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted([*p.glob("*.onnx"), *p.glob("*.engine"), *p.glob("*.pt")])
            if not found:
                raise InvalidInput(f"{p}: no .onnx, .engine or .pt files")
            out += [model_file(f) for f in found]
        else:
            out.append(model_file(p))
    return out


def encoded_images(cfg: BenchConfig, n: int) -> list[bytes]:
    """``n`` encoded JPEGs held in memory (real images when given, else a synthetic scene)."""
    import cv2

    if cfg.images is not None:
        from detpipe.export.calib import calibration_images

        paths = calibration_images(cfg.images, limit=n, seed=0)
        data = [Path(p).read_bytes() for p in paths]
        return [data[i % len(data)] for i in range(n)]
    rng = np.random.default_rng(0)
    h, w = cfg.imgsz or (480, 640)
    out = []
    for _ in range(n):
        img = np.full((h, w, 3), 127, np.uint8)
        for _ in range(8):  # a few filled shapes so NMS has something to do
            x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            s = int(rng.integers(20, max(21, min(h, w) // 3)))
            cv2.rectangle(img, (x, y), (x + s, y + s), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        img = cv2.add(img, rng.integers(0, 30, img.shape, dtype=np.uint8))
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def bench_one(
    model: ModelFile, backend: str, cfg: BenchConfig, jpegs: Sequence[bytes], gpu: int = 0
) -> dict[str, Any]:
    """Benchmark one model on one backend; a missing runtime gives ``status: skipped``.

    An ok row's ``ran_on`` says what really ran (:func:`~detpipe.runtime.backends.ran_on`).
    """
    import cv2

    from detpipe.bench.jetson import TegrastatsSampler, jetson_model, summarize_power
    from detpipe.runtime.image import preprocess

    row: dict[str, Any] = {"model": str(model.path), "format": model.label, "backend": backend}
    try:
        predictor = load_predictor(model, backend, cfg.imgsz, cfg.threads, gpu)
    except Unavailable as e:
        log.warning("%s on %s skipped: %s", model.path.name, backend, e)
        return {**row, "status": "skipped", "reason": str(e)}
    if predictor.batch is not None and predictor.batch != cfg.batch:
        reason = f"static batch {predictor.batch}, asked for {cfg.batch} (export with --dynamic or --batch)"
        log.warning("%s skipped: %s", model.path.name, reason)
        return {**row, "status": "skipped", "reason": reason}
    row.update(status="ok", ran_on=ran_on(predictor, backend, gpu), imgsz=list(predictor.imgsz))
    row.update(batch=cfg.batch, threads=cfg.threads)
    images = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in jpegs]
    x, _ = preprocess(images, predictor.imgsz, predictor.batch)
    buffers = [np.frombuffer(b, np.uint8) for b in jpegs]
    label = f"{model.label}/{backend}"
    on_jetson = jetson_model() is not None
    if "infer" in cfg.modes:
        with TegrastatsSampler(cfg.power_interval_ms) if on_jetson else _NoSampler() as sampler:
            samples = measure(lambda: predictor.infer(x), cfg.schedule, progress=f"{label} infer")
        stats = latency_stats(samples, cfg.batch)
        row["infer"] = stats.as_dict()
        row["samples_ms"] = {"infer": np.round(samples, 4).tolist()}
        if on_jetson:
            power = summarize_power(sampler.samples, stats.throughput_ips)
            row["power"] = power.as_dict() if power else {"unavailable": sampler.unavailable or "no samples"}
    if "e2e" in cfg.modes:

        def end_to_end() -> object:
            return predictor([cv2.imdecode(b, cv2.IMREAD_COLOR) for b in buffers])

        samples = measure(end_to_end, cfg.schedule, progress=f"{label} e2e")
        row["e2e"] = latency_stats(samples, cfg.batch).as_dict()
        row.setdefault("samples_ms", {})["e2e"] = np.round(samples, 4).tolist()
    return row


class _NoSampler:
    samples: list = []  # noqa: RUF012 - never mutated
    unavailable = "not a Jetson"

    def __enter__(self) -> _NoSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def add_ratios(rows: list[dict[str, Any]]) -> str | None:
    """Add ``speedup_vs_reference`` (the reference's p50 latency over the row's) to every ok row, in place.

    Medians, not means (:data:`SPEEDUP_STAT`): one outlier iteration (a 2.1 s stall of the
    PyTorch reference) moved a ratio of means to 1.71x for a format whose p50 was slower.
    The reference is the PyTorch row when there is one, else the first ok row.
    Returns the reference label.
    """
    key = f"{SPEEDUP_STAT}_ms"
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return None
    ref = next((r for r in ok if r["format"] == "pytorch"), ok[0])
    for r in ok:
        r["speedup_vs_reference"] = {
            mode: ref[mode][key] / r[mode][key] for mode in MODES if mode in r and mode in ref
        }
    return f"{ref['format']}/{ref['backend']}"


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every model on every applicable backend; write bench.json, .md and .png.

    Returns:
        The report (``bench.json``'s content).

    Raises:
        InvalidInput: a model path is missing or no (model, backend) pair applies.
    """
    from detpipe.bench.device import device_metadata
    from detpipe.bench.render import latency_plot, markdown_table

    device = resolve_device(cfg.device)
    gpu = gpu_index(device) if is_gpu(device) else 0
    models = discover_models(cfg.models)
    pairs = [(m, b) for m in models for b in backends_for(m, cfg.backends, device)]
    if not pairs:
        raise InvalidInput(f"no model can run on --backend {','.join(cfg.backends)} (device {device})")
    jpegs = encoded_images(cfg, cfg.batch)
    rows = [bench_one(m, b, cfg, jpegs, gpu) for m, b in pairs]
    reference = add_ratios(rows)
    report = {
        "device": device_metadata(),
        "settings": {
            "device": {"requested": cfg.device, "resolved": device},
            "batch": cfg.batch,
            "imgsz": list(cfg.imgsz) if cfg.imgsz else None,
            "threads": cfg.threads,
            "schedule": cfg.schedule.__dict__,
            "modes": list(cfg.modes),
            "percentiles": f"numpy.percentile method='{PERCENTILE_METHOD}'",
            "images": str(cfg.images) if cfg.images else "synthetic JPEG",
        },
        "reference": reference,
        "speedup_statistic": SPEEDUP_STAT,
        "results": rows,
    }
    out = Path(cfg.out)
    write_json(out, report)
    write_text(out.with_suffix(".md"), markdown_table(report))
    if any(r["status"] == "ok" for r in rows):
        latency_plot(report, out.with_suffix(".png"))
    return report
