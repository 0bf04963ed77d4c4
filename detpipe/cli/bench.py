"""``detpipe bench``: latency of exported models (and the PyTorch peer) per backend."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from detpipe.cli.export import imgsz_arg
from detpipe.cli.options import csv_list, non_negative_float, non_negative_int, positive_int
from detpipe.device import DEVICE_FORMS

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure latency/throughput of ONNX, TensorRT and PyTorch models",
        description="Benchmark one or more models (files, or a 'detpipe export' directory) on "
        "onnxruntime (CPU/CUDA/TensorRT providers), native TensorRT and PyTorch, trtexec-style: "
        "warm-up, then a fixed number of timed single queries (or a duration), inputs prepared "
        "before timing. Reports min/mean/p50/p90/p95/p99/max/std/CV latency (percentiles: numpy "
        "'linear') and images/s, for the network alone (infer) and end to end (JPEG decode + "
        "preprocess + network + NMS). On a Jetson also power mode, clock state, mean power from "
        "tegrastats, images/s per watt and a throttling flag. Speedups are ratios of p50 latency "
        "against the PyTorch model (else the first): medians, so one stalled iteration does not move "
        "them. Writes OUT (JSON), OUT.md (table) and OUT.png (latency distributions).",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        type=Path,
        help="a .onnx, .engine, .pt (or model .yaml) file, or an export directory; repeatable",
    )
    p.add_argument("--out", required=True, type=Path, help="bench.json path (.md and .png beside it)")
    p.add_argument(
        "--backend",
        type=csv_list,
        default=["auto"],
        help="comma-separated: auto, onnxruntime, onnxruntime-cuda, onnxruntime-trt, tensorrt, pytorch, "
        "pytorch-cuda (default: auto = best available per file)",
    )
    p.add_argument("--imgsz", type=imgsz_arg, default=None, help="input SIZE or H,W (PyTorch models; 640)")
    p.add_argument("--batch", type=positive_int, default=1, help="images per query (default: 1)")
    p.add_argument("--warmup", type=non_negative_int, default=10, help="warm-up iterations (default: 10)")
    p.add_argument("--warmup-seconds", type=non_negative_float, default=0.0, help="extra warm-up time")
    p.add_argument("--iters", type=positive_int, default=100, help="timed iterations (default: 100)")
    p.add_argument("--duration", type=non_negative_float, default=None, help="time for N seconds instead")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--images", type=Path, default=None, help="real images for e2e (dir, list or YAML)")
    p.add_argument("--modes", type=csv_list, default=["infer", "e2e"], help="infer,e2e (default: both)")
    p.add_argument(
        "--device",
        default="auto",
        help=f"{DEVICE_FORMS}: where 'auto' backends run (default: auto = GPU 0 when present, else CPU); "
        "each result records what really ran (onnxruntime's providers, the TensorRT/torch device)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from detpipe.bench.core import Schedule
    from detpipe.bench.run import BenchConfig, run_bench
    from detpipe.runtime.predictors import default_threads

    cfg = BenchConfig(
        models=tuple(args.model),
        out=args.out,
        backends=tuple(args.backend),
        imgsz=args.imgsz,
        batch=args.batch,
        schedule=Schedule(
            warmup_iters=args.warmup,
            warmup_s=args.warmup_seconds,
            iters=args.iters,
            duration_s=args.duration or None,
        ),
        threads=args.threads or default_threads(),
        images=args.images,
        modes=tuple(args.modes),
        device=args.device,
    )
    from detpipe.bench.render import markdown_table

    report = run_bench(cfg)
    print(markdown_table(report), end="")
    print(f"wrote {args.out}, {args.out.with_suffix('.md')}, {args.out.with_suffix('.png')}")
    return 0
