"""A short, self-contained check of detpipe's GPU path, for a machine lent for a few minutes.

Run by ``scripts/gpu_check.sh`` (which prepares the interpreter offline); by hand::

    PYTHONPATH=. python3 scripts/gpu_check.py --out gpu_check.json
    PYTHONPATH=. python3 scripts/gpu_check.py --missing          # pins of what is not importable

Every step runs the real ``detpipe`` CLI (``detpipe.cli.main.main``, in this process so torch
and CUDA initialise once; ``--launcher torchrun`` starts its own processes) on a synthetic
set, and records pass / fail / ``skipped: <reason>`` with its figures in one JSON, rewritten
after every check (a crash or an expired lease still leaves the checks done so far):

========================  ==========================================  =========================
check                     with a CUDA device                          without one (fallback)
========================  ==========================================  =========================
train_gpu                 1 epoch, ``--device 0``                     train_cpu: 1 epoch on CPU
train_torchrun_nccl       torchrun, one process per GPU (NCCL)        train_torchrun_gloo: 2 CPU
                                                                      processes (gloo)
predict_eval_gpu          ``evaluate --weights --device 0``           predict_eval_cpu
export_onnx               ``export --formats onnx,onnx-int8``         same, on CPU
onnxruntime_cuda          ``bench --backend onnxruntime-cuda``, the   onnxruntime_cpu
                          providers the session really used
tensorrt                  ``export --formats engine-fp16,engine-int8  skipped
                          --device cuda`` + ``bench --backend
                          tensorrt``
========================  ==========================================  =========================

A GPU check without a CUDA device is ``skipped: no CUDA device``; onnxruntime CUDA and
TensorRT are ``skipped`` when their package or provider is missing. Steps stop being started
once ``--budget-s`` is spent (``skipped: time budget``), so the whole fits a short lease.
Exit status: 0 when no check failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NO_CUDA = "skipped: no CUDA device"

# Modules the check imports -> the distribution pinned in pyproject.toml that provides them.
NEEDED = {
    "ultralytics": "ultralytics",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxslim": "onnxslim",
    "cv2": "opencv-python-headless",
    "yaml": "pyyaml",
    "numpy": "numpy",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
}


def pins(pyproject: Path = REPO / "pyproject.toml") -> dict[str, str]:
    """Every ``name==version`` requirement in pyproject.toml (runtime and extras), by name."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    out: dict[str, str] = {}
    for req in reqs:
        name = req.split(";")[0].split("==")[0].split("[")[0].strip().lower()
        out.setdefault(name, req.split(";")[0].strip())
    return out


def missing_requirements() -> list[str]:
    """Pinned requirements of the modules not importable here (what the wheel folder must hold)."""
    pinned = pins()
    return [pinned.get(dist, dist) for module, dist in NEEDED.items() if not _findable(module)]


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or shadowed installation
        return False


@dataclass(frozen=True)
class Settings:
    """Sizes of the check (the defaults fit a few minutes on one GPU)."""

    images: int = 256
    val_images: int = 64
    imgsz: int = 320
    batch: int = 32
    bench_iters: int = 100
    budget_s: float = 450.0
    cpu_ddp_procs: int = 2


@dataclass
class Check:
    """One check's outcome."""

    status: str = "pending"
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Done:
    """What one CLI command did: its exit code and output."""

    returncode: int
    stdout: str
    stderr: str


class Runner:
    """Runs the checks in order within a time budget and collects the report."""

    def __init__(self, work: Path, settings: Settings, out: Path | None = None) -> None:
        self.work, self.s, self.out = work, settings, out
        self.start = time.monotonic()
        self.checks: dict[str, Check] = {}
        self.env: dict[str, Any] = {}

    def remaining(self) -> float:
        return self.s.budget_s - (time.monotonic() - self.start)

    def cli(self, *args: str) -> Done:
        """``detpipe ARGS`` in this process (its exit code and captured output)."""
        import contextlib
        import io
        import traceback

        from detpipe.cli.main import main as detpipe_main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = detpipe_main(list(args))
            except SystemExit as e:  # argparse
                code = e.code if isinstance(e.code, int) else 2
            except Exception:  # a bug, not a bad input: keep it in the report
                traceback.print_exc()
                code = 99
        return Done(code, out.getvalue(), err.getvalue())

    def run(self, name: str, fn: Callable[[], dict[str, Any]], skip: str | None = None) -> Check:
        """Run ``fn`` as check ``name`` (``skip``: the reason not to)."""
        check = self.checks[name] = Check()
        if skip:
            check.status = skip
        elif self.remaining() <= 0:
            check.status = "skipped: time budget"
        else:
            t0 = time.monotonic()
            try:
                check.figures = fn()
                check.status = "pass"
            except CheckFailed as e:
                check.status, check.error = "fail", str(e)
            check.seconds = round(time.monotonic() - t0, 2)
        print(
            f"[gpu_check] {name:<22} {check.status:<34} {check.seconds:7.1f} s", file=sys.stderr, flush=True
        )
        if self.out is not None:
            write_report(self.out, report(self))
        return check

    def ok(self, done: Done, what: str) -> str:
        """``done``'s stdout, or raise with its last stderr lines."""
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise CheckFailed(f"{what}: exit {done.returncode}: {tail}")
        return done.stdout


class CheckFailed(Exception):
    """A check's command failed or its result is wrong."""


def environment() -> dict[str, Any]:
    """Python, torch/CUDA, GPUs, onnxruntime providers, TensorRT: what this machine offers."""
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpus": [],
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            env["gpus"].append({"index": i, "name": p.name, "memory_gib": round(p.total_memory / 2**30, 1)})
        env["nccl"] = (
            ".".join(map(str, torch.cuda.nccl.version())) if torch.distributed.is_nccl_available() else None
        )
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        env["driver"] = (
            smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else None
        )
    try:
        import onnxruntime as ort

        env["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except ImportError:
        env["onnxruntime"] = None
    env["tensorrt"] = _tensorrt_version()
    return env


def _tensorrt_version() -> str | None:
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except ImportError:
        return None


def run_checks(work: Path, settings: Settings, out: Path | None = None) -> dict[str, Any]:
    """Every check, in order; the report (also written to ``out`` after each check)."""
    os.environ.setdefault("XDG_CACHE_HOME", str(work / "cache"))  # ultralytics settings, fonts
    os.environ.setdefault("YOLO_OFFLINE", "1")
    r = Runner(work, settings, out)
    env = r.env = environment()
    gpus = len(env["gpus"])
    coco, yolo = work / "coco", work / "yolo"
    data_yaml = yolo / "dataset.yaml"
    val_json = coco / "annotations" / "instances_val2017.json"
    s = settings

    def data() -> dict[str, Any]:
        r.ok(
            r.cli(
                "data",
                "synth",
                "--out",
                str(coco),
                "--images",
                str(s.images),
                "--val-images",
                str(s.val_images),
                "--classes",
                "3",
                "--imgsz",
                str(s.imgsz),
                "--seed",
                "0",
            ),
            "data synth",
        )
        r.ok(
            r.cli(
                "data",
                "yolo",
                "--annotations",
                str(coco / "annotations" / "instances_train2017.json"),
                "--images-dir",
                str(coco / "images" / "train2017"),
                "--val-annotations",
                str(val_json),
                "--val-images-dir",
                str(coco / "images" / "val2017"),
                "--out",
                str(yolo),
            ),
            "data yolo",
        )
        return {"train_images": s.images, "val_images": s.val_images, "imgsz": s.imgsz}

    def train(out: Path, device: str, *launch: str) -> Callable[[], dict[str, Any]]:
        def step() -> dict[str, Any]:
            done = r.cli(
                "train",
                "--data",
                str(data_yaml),
                "--model",
                "yolov8n.yaml",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--imgsz",
                str(s.imgsz),
                "--batch",
                str(s.batch),
                "--workers",
                "2",
                "--device",
                device,
                "--no-plots",
                "--overwrite",
                *launch,
            )
            summary = json.loads((out / "train_summary.json").read_text()) if done.returncode == 0 else None
            r.ok(done, "train")
            assert summary is not None
            keys = ("images_per_s", "wall_time_s", "best_map50", "best_map5095", "world_size")
            return {k: summary.get(k) for k in keys} | {"weights": str(out / "weights" / "best.pt")}

        return step

    def predict_eval(device: str) -> Callable[[], dict[str, Any]]:
        def step() -> dict[str, Any]:
            weights = _weights(r)
            out = work / f"eval-{device}"
            r.ok(
                r.cli(
                    "evaluate",
                    "--weights",
                    weights,
                    "--data",
                    str(data_yaml),
                    "--gt",
                    str(val_json),
                    "--out",
                    str(out),
                    "--imgsz",
                    str(s.imgsz),
                    "--device",
                    device,
                    "--no-plots",
                ),
                "evaluate",
            )
            metrics = json.loads((out / "metrics.json").read_text())
            return {k: metrics.get(k) for k in ("map50_95", "map50")} | {"device": device}

        return step

    def export(formats: str, out: Path, device: str) -> Callable[[], dict[str, Any]]:
        def step() -> dict[str, Any]:
            stdout = r.ok(
                r.cli(
                    "export",
                    "--weights",
                    _weights(r),
                    "--formats",
                    formats,
                    "--out",
                    str(out),
                    "--imgsz",
                    str(s.imgsz),
                    "--data",
                    str(data_yaml),
                    "--device",
                    device,
                    "--calib",
                    str(yolo / "train2017.txt"),
                    "--calib-images",
                    "64",
                    "--val-annotations",
                    str(val_json),
                    "--val-images",
                    str(coco / "images" / "val2017"),
                    "--no-gate",
                    "--json",
                ),
                "export",
            )
            report = json.loads(stdout)
            formats_out = {}
            for fmt, entry in report.get("formats", {}).items():
                if entry.get("status") != "ok":
                    raise CheckFailed(f"export {fmt}: {entry.get('status')}: {entry.get('reason')}")
                formats_out[fmt] = {k: entry.get(k) for k in ("file", "seconds", "mAP50-95", "size_mb")}
            acc = report.get("accuracy", {}).get("formats", {})
            for fmt, m in acc.items():
                formats_out.setdefault(fmt, {})["mAP50-95"] = m.get("mAP50-95")
            return {"formats": formats_out}

        return step

    def bench(model: Path, backend: str, device: str, expect_gpu: bool) -> Callable[[], dict[str, Any]]:
        def step() -> dict[str, Any]:
            out = work / f"bench-{backend}-{model.stem}.json"
            r.ok(
                r.cli(
                    "bench",
                    "--model",
                    str(model),
                    "--out",
                    str(out),
                    "--backend",
                    backend,
                    "--device",
                    device,
                    "--iters",
                    str(s.bench_iters),
                    "--warmup",
                    "10",
                ),
                f"bench {backend}",
            )
            rows = json.loads(out.read_text())["results"]
            figures = {}
            for row in rows:
                if row.get("status") != "ok":
                    raise CheckFailed(
                        f"bench {backend} {model.name}: {row.get('status')}: {row.get('reason')}"
                    )
                ran = row.get("ran_on") or {}
                if expect_gpu and not str(ran.get("device", "")).startswith("cuda"):
                    raise CheckFailed(f"bench {backend}: ran on {ran} instead of a GPU")
                figures[row.get("model", model.name)] = {
                    "ran_on": ran,
                    "infer_p50_ms": (row.get("infer") or {}).get("p50_ms"),
                    "infer_images_per_s": (row.get("infer") or {}).get("throughput_ips"),
                    "e2e_p50_ms": (row.get("e2e") or {}).get("p50_ms"),
                }
            return figures

        return step

    r.run("data", data)
    if r.checks["data"].status != "pass":
        return report(r)
    if gpus:
        r.run("train_gpu", train(work / "train-gpu", "0"))
        r.run(
            "train_torchrun_nccl",
            train(work / "train-ddp", "cuda", "--launcher", "torchrun", "--nproc-per-node", str(gpus)),
        )
        r.run("predict_eval_gpu", predict_eval("0"))
    else:
        for name in ("train_gpu", "train_torchrun_nccl", "predict_eval_gpu"):
            r.run(name, lambda: {}, skip=NO_CUDA)
        r.run("train_cpu", train(work / "train-cpu", "cpu"))
        ddp_skip = None if s.cpu_ddp_procs > 1 else "skipped: --cpu-ddp-procs < 2"
        r.run(
            "train_torchrun_gloo",
            train(
                work / "train-ddp-cpu",
                "cpu",
                "--launcher",
                "torchrun",
                "--nproc-per-node",
                str(s.cpu_ddp_procs),
            ),
            skip=ddp_skip,
        )
        r.run("predict_eval_cpu", predict_eval("cpu"))
    device = "0" if gpus else "cpu"
    onnx_dir = work / "export-onnx"
    r.run("export_onnx", export("onnx,onnx-int8", onnx_dir, device))
    have_onnx = r.checks["export_onnx"].status == "pass"
    ort_providers = (env.get("onnxruntime") or {}).get("providers", [])
    ort_skip = (
        NO_CUDA
        if not gpus
        else (
            None
            if "CUDAExecutionProvider" in ort_providers
            else "skipped: no CUDAExecutionProvider in onnxruntime"
        )
    )
    if not have_onnx and not ort_skip:
        ort_skip = "skipped: export_onnx failed"
    r.run("onnxruntime_cuda", bench(onnx_dir / "model.onnx", "onnxruntime-cuda", "0", True), skip=ort_skip)
    r.run(
        "onnxruntime_cpu",
        bench(onnx_dir, "onnxruntime", "cpu", False),
        skip=None if have_onnx else "skipped: export_onnx failed",
    )
    trt_skip = NO_CUDA if not gpus else (None if env["tensorrt"] else "skipped: tensorrt not importable")
    engines = work / "export-engines"

    def tensorrt() -> dict[str, Any]:
        built = export("engine-fp16,engine-int8", engines, "0")()
        return {"build": built, "bench": bench(engines, "tensorrt", "0", True)()}

    r.run("tensorrt", tensorrt, skip=trt_skip)
    return report(r)


def _weights(r: Runner) -> str:
    """The weights of the first training check that passed."""
    for name in ("train_gpu", "train_cpu", "train_torchrun_nccl", "train_torchrun_gloo"):
        check = r.checks.get(name)
        if check and check.status == "pass":
            return str(check.figures["weights"])
    raise CheckFailed("no training check passed: nothing to predict or export with")


def report(r: Runner) -> dict[str, Any]:
    """The report so far."""
    checks = {name: c.__dict__ for name, c in r.checks.items()}
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": r.env,
        "settings": r.s.__dict__,
        "total_s": round(time.monotonic() - r.start, 1),
        "passed": all(c.status != "fail" for c in r.checks.values()),
        "counts": {
            k: sum(1 for c in r.checks.values() if c.status.startswith(k))
            for k in ("pass", "fail", "skipped")
        },
        "checks": checks,
    }


def write_report(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", type=Path, default=Path("gpu_check.json"), help="the report (default: gpu_check.json)"
    )
    p.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--missing", action="store_true", help="print the pinned requirements not importable here")
    d = Settings()
    p.add_argument("--images", type=int, default=d.images, help=f"synthetic train images ({d.images})")
    p.add_argument("--val-images", type=int, default=d.val_images, help=f"val images ({d.val_images})")
    p.add_argument("--imgsz", type=int, default=d.imgsz, help=f"image and model size ({d.imgsz})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"global training batch ({d.batch})")
    p.add_argument(
        "--bench-iters", type=int, default=d.bench_iters, help=f"timed iterations ({d.bench_iters})"
    )
    p.add_argument(
        "--budget-s", type=float, default=d.budget_s, help=f"start no check after this ({d.budget_s:g} s)"
    )
    p.add_argument(
        "--cpu-ddp-procs", type=int, default=d.cpu_ddp_procs, help="gloo processes without a GPU (2)"
    )
    args = p.parse_args(argv)
    if args.missing:
        print("\n".join(missing_requirements()))
        return 0
    settings = Settings(
        images=args.images,
        val_images=args.val_images,
        imgsz=args.imgsz,
        batch=args.batch,
        bench_iters=args.bench_iters,
        budget_s=args.budget_s,
        cpu_ddp_procs=args.cpu_ddp_procs,
    )
    import tempfile

    with tempfile.TemporaryDirectory(prefix="detpipe-gpu-check-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run_checks(work, settings, args.out)
    write_report(args.out, result)
    c = result["counts"]
    print(
        f"[gpu_check] {c['pass']} passed, {c['fail']} failed, {c['skipped']} skipped "
        f"in {result['total_s']} s: {args.out}"
    )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
