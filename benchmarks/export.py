"""Benchmark: exported formats against their peers, accuracy and latency in one run.

    .venv/bin/python benchmarks/export.py                       # CPU: synth data, train, export, time
    .venv/bin/python benchmarks/export.py --imgsz 640 --threads 1 --json runs/bench-export/t1.json
    .venv/bin/python benchmarks/export.py --device cuda --weights best.pt \\
        --data yolo/dataset.yaml --val-annotations data/annotations/instances_val2017.json

What it does (everything cached under ``--workdir``, default ``runs/bench-export``):

1. data: ``detpipe data synth`` (400 train / 100 val images, 6 classes, 320 px) and
   ``detpipe data yolo``, unless ``--data`` is given;
2. model: YOLOv8n trained from scratch with ultralytics on the CPU (``--epochs`` at
   ``--train-imgsz``; weights cached by a key of everything that determines them), unless
   ``--weights``;
3. per size in ``--imgsz`` (default 640 and 320): ``detpipe export`` to onnx + onnx-int8
   (+ engine-fp16, engine-int8 on a GPU), every format evaluated on the val set with
   detpipe's evaluator (mAP, delta to PyTorch at that size);
4. latency at that size, batch 1, infer-only and end-to-end, the same thread count for every
   CPU backend, in ``--rounds`` interleaved rounds (each round times every model once, so
   background load hits all of them alike); ratios are of the median latencies, and ONNX
   INT8/FP32 is also given as the median of the per-round ratios with their spread
   (min, quartiles, max);
5. ``--profile-ops``: onnxruntime's own profiler on the FP32 and INT8 models (per operator
   type, ms per run: where INT8 gains and loses, e.g. QLinearConv vs Conv).

Ratios printed (targets in brackets):

- CPU: ONNX INT8 vs ONNX FP32 on onnxruntime [>= 1.5x], with the mAP50-95 drop [<= 1.0];
  ONNX FP32 on onnxruntime vs the PyTorch model on the CPU [>= 1.0x];
- GPU (``--device cuda``): TensorRT FP16 vs onnxruntime CUDA FP32; TensorRT INT8 vs FP16;
  TensorRT FP16 vs PyTorch CUDA.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detpipe.bench.core import Schedule, latency_stats, measure  # noqa: E402
from detpipe.bench.device import cpu_flags, cpu_model  # noqa: E402
from detpipe.runtime.backends import model_file  # noqa: E402
from detpipe.runtime.image import preprocess  # noqa: E402
from detpipe.runtime.predictors import default_threads  # noqa: E402

log = logging.getLogger("benchmarks.export")

SYNTH = {"images": 400, "val_images": 100, "classes": 6, "imgsz": 320, "seed": 0}


@dataclass(frozen=True)
class Dataset:
    yaml: Path
    train_list: Path
    val_annotations: Path
    val_images: Path | None


def make_data(workdir: Path) -> Dataset:
    """Synthetic COCO data and its YOLO layout (reused when the same config made it)."""
    from detpipe.data.layout import yolo_dataset
    from detpipe.data.synth import SynthConfig, synthesize

    root = workdir / "data"
    stamp = root / "config.json"
    if not stamp.is_file() or json.loads(stamp.read_text()) != SYNTH:
        synthesize(SynthConfig(out=root / "synth", **SYNTH))
        yolo_dataset(root / "synth", root / "yolo")
        stamp.write_text(json.dumps(SYNTH))
    return Dataset(
        yaml=root / "yolo/dataset.yaml",
        train_list=root / "yolo/train2017.txt",
        val_annotations=root / "synth/annotations/instances_val2017.json",
        val_images=root / "synth/images/val2017",
    )


_TRAIN = """
import sys
from pathlib import Path
from detpipe.ultralytics_env import configure_offline
out = Path(sys.argv[1])
configure_offline(out / "ultralytics")
from ultralytics import YOLO
last = out / "train" / "weights" / "last.pt"
if last.is_file():  # an interrupted run: continue from its last epoch
    YOLO(str(last)).train(resume=True, workers=2)
else:
    YOLO(sys.argv[2]).train(
        data=sys.argv[3], epochs=int(sys.argv[4]), imgsz=int(sys.argv[5]), batch=16, seed=0, device="cpu",
        workers=2, project=str(out), name="train", exist_ok=True, plots=False, amp=False, val=False,
        verbose=False,
    )
"""


def train(workdir: Path, data: Dataset, model: str, epochs: int, imgsz: int) -> Path:
    """Train ``model`` from scratch on the CPU; cached by (data config, model, epochs, imgsz, versions).

    An interrupted run (weights but no ``done`` marker) resumes from its last epoch.
    """
    key = json.dumps([SYNTH, model, epochs, imgsz, version("ultralytics"), version("torch")])
    out = workdir / f"train-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    weights = out / "train" / "weights" / "last.pt"
    done = out / "done"  # written after the last epoch: an interrupted run is not a cache hit
    if done.is_file() and weights.is_file():
        print(f"using cached weights {weights}")
        return weights
    verb = "resuming" if weights.is_file() else "training"
    print(f"{verb} {model} for {epochs} epochs at {imgsz} px on the CPU (cached in {out}) ...")
    out.mkdir(parents=True, exist_ok=True)
    (out / "key.json").write_text(key)
    cmd = [sys.executable, "-c", _TRAIN, str(out), model, str(data.yaml), str(epochs), str(imgsz)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    done.write_text(key)
    return weights


def time_interleaved(
    entries: list[tuple[str, Any]], x: np.ndarray, jpegs: list[bytes], rounds: int, iters: int, warmup: int
) -> dict[str, dict[str, Any]]:
    """Infer-only and end-to-end latency of each predictor, rounds interleaved across predictors."""
    import cv2

    buffers = [np.frombuffer(b, np.uint8) for b in jpegs]
    samples: dict[str, dict[str, list[np.ndarray]]] = {name: {"infer": [], "e2e": []} for name, _ in entries}
    for r in range(rounds):
        for name, predictor in entries:
            infer = measure(lambda p=predictor: p.infer(x), Schedule(warmup_iters=warmup, iters=iters))

            def e2e(p: Any = predictor) -> object:
                return p([cv2.imdecode(b, cv2.IMREAD_COLOR) for b in buffers])

            end = measure(e2e, Schedule(warmup_iters=max(1, warmup // 2), iters=max(1, iters // 2)))
            samples[name]["infer"].append(infer)
            samples[name]["e2e"].append(end)
            print(f"  round {r + 1}/{rounds} {name:<22} infer p50 {np.median(infer):7.2f} ms")
    out = {}
    for name, modes in samples.items():
        out[name] = {
            mode: {
                **latency_stats(np.concatenate(runs)).as_dict(),
                "round_p50_ms": [float(np.median(s)) for s in runs],
            }
            for mode, runs in modes.items()
        }
    return out


def round_ratios(latency: dict[str, Any], slow: str, fast: str, mode: str = "infer") -> dict[str, Any] | None:
    """``slow``/``fast`` per interleaved round (same round, same background load): median and spread."""
    if slow not in latency or fast not in latency:
        return None
    per_round = np.array(latency[slow][mode]["round_p50_ms"]) / np.array(latency[fast][mode]["round_p50_ms"])
    q1, median, q3 = np.percentile(per_round, [25, 50, 75])
    return {
        "median": float(median),
        "min": float(per_round.min()),
        "q1": float(q1),
        "q3": float(q3),
        "max": float(per_round.max()),
        "per_round": [round(float(v), 3) for v in per_round],
    }


def op_profile(model: Path, x: np.ndarray, threads: int, runs: int, tmp: Path) -> dict[str, float]:
    """ms per run spent in each operator type (onnxruntime's profiler), largest first."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp / model.stem)
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    n = sum(1 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run") or 1
    totals: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            totals[op] = totals.get(op, 0.0) + e["dur"] / 1000.0 / n
    return {op: round(ms, 3) for op, ms in sorted(totals.items(), key=lambda kv: -kv[1])}


def ratio(latency: dict[str, Any], slow: str, fast: str, mode: str = "infer") -> float | None:
    """How many times faster ``fast`` is than ``slow`` (median latency ratio)."""
    if slow not in latency or fast not in latency:
        return None
    return latency[slow][mode]["p50_ms"] / latency[fast][mode]["p50_ms"]


def measure_size(args: argparse.Namespace, weights: Path, data: Dataset, imgsz: int, threads: int) -> dict:
    """Export at ``imgsz``, evaluate every format, time every backend; the figures of one size."""
    import cv2

    from detpipe.bench.run import BenchConfig, encoded_images
    from detpipe.export.gate import GateConfig
    from detpipe.export.stage import ExportConfig, run_export
    from detpipe.runtime.backends import load_predictor

    formats = ["onnx", "onnx-int8"] + (["engine-fp16", "engine-int8"] if args.device == "cuda" else [])
    export_dir = args.workdir / f"export-{imgsz}"
    cached = export_dir / "export_report.json"
    if args.reuse_export and cached.is_file():
        print(f"\n[{imgsz} px] reusing {export_dir} (--reuse-export)")
        report = json.loads(cached.read_text())
    else:
        print(f"\n[{imgsz} px] exporting {', '.join(formats)} and evaluating every format ...")
        report = None
    report = report or run_export(
        ExportConfig(
            weights=weights,
            out=export_dir,
            formats=tuple(formats),
            imgsz=(imgsz, imgsz),
            data=args.data,
            calib=data.train_list,
            calib_images=args.calib_images,
            calib_method=args.calib_method,
            val_annotations=data.val_annotations,
            val_images=data.val_images,
            gate=GateConfig(max_drop={"int8": 1.0, "fp16": 1.0}, enabled=False),
            threads=threads,
        )
    )
    plan = [
        ("pytorch-cpu", weights, "pytorch"),
        ("onnx-fp32-cpu", export_dir / "model.onnx", "onnxruntime"),
        ("onnx-int8-cpu", export_dir / "model.int8.onnx", "onnxruntime"),
    ]
    if args.device == "cuda":
        plan += [
            ("pytorch-cuda", weights, "pytorch-cuda"),
            ("onnx-fp32-cuda", export_dir / "model.onnx", "onnxruntime-cuda"),
        ]
        for precision in ("fp16", "int8"):
            engine = export_dir / f"model.{precision}.engine"
            if engine.is_file():
                plan.append((f"trt-{precision}", engine, "tensorrt"))
    entries = []
    for name, path, backend in plan:
        try:
            entries.append((name, load_predictor(model_file(path), backend, (imgsz, imgsz), threads)))
        except Exception as e:  # a missing provider on this machine: report, keep going
            print(f"  {name}: skipped ({e})")
    sample = data.val_images or data.train_list
    jpegs = encoded_images(BenchConfig(models=(export_dir,), out=export_dir / "x.json", images=sample), 1)
    x, _ = preprocess([cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR)], imgsz, 1)
    print(f"[{imgsz} px] timing {len(entries)} models, batch 1, {threads} threads, {args.rounds} rounds ...")
    latency = time_interleaved(entries, x, jpegs, args.rounds, args.iters, args.warmup)
    profile = None
    if args.profile_ops:
        print(f"[{imgsz} px] profiling operators (onnxruntime profiler, {args.iters} runs per model) ...")
        profile = {
            fmt: op_profile(export_dir / name, x, threads, args.iters, export_dir)
            for fmt, name in (("onnx-fp32", "model.onnx"), ("onnx-int8", "model.int8.onnx"))
        }
    acc = report["accuracy"]
    return {
        "op_profile_ms": profile,
        "round_ratios": {
            "onnx_int8_vs_fp32_cpu": round_ratios(latency, "onnx-fp32-cpu", "onnx-int8-cpu"),
            "onnx_int8_vs_fp32_cpu_e2e": round_ratios(latency, "onnx-fp32-cpu", "onnx-int8-cpu", "e2e"),
        },
        "imgsz": imgsz,
        "accuracy": acc,
        "latency_ms": latency,
        "int8_map50_95_drop_points": -acc["formats"]["onnx-int8"]["delta_mAP50-95_points"],
        "ratios": {
            "onnx_int8_vs_fp32_cpu": ratio(latency, "onnx-fp32-cpu", "onnx-int8-cpu"),
            "onnx_int8_vs_fp32_cpu_e2e": ratio(latency, "onnx-fp32-cpu", "onnx-int8-cpu", "e2e"),
            "onnx_fp32_vs_pytorch_cpu": ratio(latency, "pytorch-cpu", "onnx-fp32-cpu"),
            "onnx_fp32_vs_pytorch_cpu_e2e": ratio(latency, "pytorch-cpu", "onnx-fp32-cpu", "e2e"),
            "trt_fp16_vs_onnx_cuda_fp32": ratio(latency, "onnx-fp32-cuda", "trt-fp16"),
            "trt_int8_vs_trt_fp16": ratio(latency, "trt-fp16", "trt-int8"),
            "trt_fp16_vs_pytorch_cuda": ratio(latency, "pytorch-cuda", "trt-fp16"),
        },
        "formats": {k: {kk: v.get(kk) for kk in ("status", "reason")} for k, v in report["formats"].items()},
    }


def print_size(result: dict) -> None:
    """The accuracy and latency tables and the ratios of one size, with their targets."""
    acc, latency, r = result["accuracy"], result["latency_ms"], result["ratios"]
    print(f"\n=== {result['imgsz']} px, val {acc['val_images']} images ===")
    print(f"  {'model':<16} {'mAP50-95':>9} {'mAP50':>7} {'delta pts':>9}")
    print(f"  {'pytorch':<16} {100 * acc['pytorch']['mAP50-95']:9.2f} {100 * acc['pytorch']['mAP50']:7.2f}")
    for fmt, m in acc["formats"].items():
        delta = m["delta_mAP50-95_points"]
        print(f"  {fmt:<16} {100 * m['mAP50-95']:9.2f} {100 * m['mAP50']:7.2f} {delta:+9.2f}")
    print(f"  {'latency (ms)':<16} {'infer p50':>9} {'p99':>7} {'e2e p50':>9} {'img/s':>7}")
    for name, lat in latency.items():
        i, e = lat["infer"], lat["e2e"]
        ips = i["throughput_ips"]
        print(f"  {name:<16} {i['p50_ms']:9.2f} {i['p99_ms']:7.2f} {e['p50_ms']:9.2f} {ips:7.1f}")

    def show(label: str, value: float | None, target: float | None = None) -> None:
        if value is None:
            return
        verdict = "" if target is None else ("  OK" if value >= target else "  BELOW TARGET")
        goal = f">= {target:.1f}x" if target is not None else "info"
        print(f"  {label:<52} {value:6.2f}x  [{goal}]{verdict}")

    show("ONNX INT8 vs ONNX FP32, onnxruntime CPU, infer", r["onnx_int8_vs_fp32_cpu"], 1.5)
    show("ONNX INT8 vs ONNX FP32, onnxruntime CPU, end to end", r["onnx_int8_vs_fp32_cpu_e2e"])
    for mode, rr in result["round_ratios"].items():
        if rr:
            print(
                f"  {'  per round: ' + mode:<52} median {rr['median']:.2f}x, min {rr['min']:.2f} "
                f"q1 {rr['q1']:.2f} q3 {rr['q3']:.2f} max {rr['max']:.2f} ({len(rr['per_round'])} rounds)"
            )
    drop = result["int8_map50_95_drop_points"]
    print(f"  {'ONNX INT8 mAP50-95 drop vs PyTorch (points)':<52} {drop:6.2f}   [<= 1.0]"
          f"{'  OK' if drop <= 1.0 else '  ABOVE TARGET'}")  # fmt: skip
    show("ONNX FP32 (onnxruntime) vs PyTorch, CPU, infer", r["onnx_fp32_vs_pytorch_cpu"], 1.0)
    show("ONNX FP32 (onnxruntime) vs PyTorch, CPU, end to end", r["onnx_fp32_vs_pytorch_cpu_e2e"])
    show("TensorRT FP16 vs onnxruntime CUDA FP32 (GPU)", r["trt_fp16_vs_onnx_cuda_fp32"])
    show("TensorRT INT8 vs TensorRT FP16 (GPU)", r["trt_int8_vs_trt_fp16"])
    show("TensorRT FP16 vs PyTorch CUDA (GPU)", r["trt_fp16_vs_pytorch_cuda"])
    for fmt, ops in (result.get("op_profile_ms") or {}).items():
        top = ", ".join(f"{op} {ms:.1f}" for op, ms in list(ops.items())[:6])
        print(f"  ops {fmt:<10} ms/run: {top} (total {sum(ops.values()):.1f})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench-export")
    p.add_argument("--weights", type=Path, default=None, help="use these weights instead of training")
    p.add_argument("--data", type=Path, default=None, help="dataset YAML (with --val-annotations)")
    p.add_argument("--val-annotations", type=Path, default=None)
    p.add_argument("--val-images", type=Path, default=None)
    p.add_argument("--model", default="yolov8n.yaml", help="architecture to train (default yolov8n.yaml)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--train-imgsz", type=int, default=320, help="training size (the synthetic images' size)")
    p.add_argument(
        "--imgsz",
        default="640,320",
        help="export/eval/latency sizes, comma-separated (default 640,320: the target is checked at "
        "640, where compute dominates, and reported at the training size too)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--calib-images", type=int, default=300)
    p.add_argument("--calib-method", default="minmax")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--iters", type=int, default=30, help="timed iterations per model per round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--reuse-export", action="store_true", help="time an earlier run's exports again")
    p.add_argument(
        "--profile-ops", action="store_true", help="per-operator time of ONNX FP32/INT8 (onnxruntime)"
    )
    p.add_argument(
        "--json", type=Path, default=None, help="write the figures here (default: WORKDIR/result.json)"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    args.workdir.mkdir(parents=True, exist_ok=True)
    threads = args.threads or default_threads()
    if args.data is None:
        data = make_data(args.workdir)
    else:  # a dataset YAML: its train list calibrates, its val split is evaluated
        data = Dataset(args.data, args.data, args.val_annotations, args.val_images)
    weights = args.weights or train(args.workdir, data, args.model, args.epochs, args.train_imgsz)
    sizes = [int(s) for s in args.imgsz.split(",")]
    results = [measure_size(args, weights, data, size, threads) for size in sizes]
    machine = {
        "cpu": cpu_model(),
        "cores": threads,
        "int8_flags": cpu_flags(),
        "python": platform.python_version(),
        "onnxruntime": version("onnxruntime"),
        "torch": version("torch"),
        "date": date.today().isoformat(),
    }
    print(f"\nmachine: {machine['cpu']}, {threads} threads, SIMD {' '.join(machine['int8_flags']) or '-'}")
    print(f"model: {weights} (trained at {args.train_imgsz} px)")
    for result in results:
        print_size(result)
    out = args.json or args.workdir / "result.json"
    from detpipe.io import write_json

    write_json(
        out,
        {
            "machine": machine,
            "weights": str(weights),
            "train_imgsz": args.train_imgsz,
            "threads": threads,
            "rounds": args.rounds,
            "iters_per_round": args.iters,
            "sizes": results,
        },
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
