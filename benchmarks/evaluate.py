"""Benchmark: detpipe's COCO bbox evaluator against pycocotools and faster-coco-eval, val2017-sized.

    .venv/bin/python benchmarks/evaluate.py                 # 5000 images, 100 dets/image, 80 classes
    .venv/bin/python benchmarks/evaluate.py --images 500    # quicker
    .venv/bin/python benchmarks/evaluate.py --json out.json # also write the figures as JSON
    .venv/bin/python benchmarks/evaluate.py --baseline-src /tmp/before  # also the command from another tree

The problem is generated (seeded) to look like val2017 and a decent detector's output:
long-tailed class frequencies (one class ~30 % of the boxes), ~7.3 boxes per image with
some empty and some crowded images, COCO's small/medium/large mix, ~1 % crowd regions;
detections near most ground truth with box noise, sometimes a wrong class or a duplicate,
plus false positives on random boxes, scores at 4 decimals (so ties happen), 100 per image.

Peers: pycocotools ``COCOeval`` (the reference) and faster-coco-eval's ``COCOeval_faster``
(C++; what ultralytics adopted), each ``evaluate() + accumulate() + summarize()``, against
:func:`detpipe.evaluate.cocoeval.evaluate_bbox`. Every evaluator runs ``--rounds`` times, each
time in a fresh process (interleaved, the order rotating per round), and the figures are
medians: the evaluate phase, loading (``COCO()``/``loadRes`` vs ``load_coco``/
``load_detections``), and the whole process as the parent saw it (interpreter start, imports,
load, evaluate). The script asserts that detpipe's 12 stats and full precision/recall arrays
equal pycocotools' and reports faster-coco-eval's largest difference.

Two more processes run in the same interleaved rounds: ``command``, the whole
``detpipe evaluate --gt GT --dt DT --out metrics.json`` as users run it (``python -m
detpipe.cli.main``: interpreter, the CLI parser's imports, load, evaluate, per-class analysis,
confusion matrix, metrics.json; its 12 ``coco_stats`` asserted equal to pycocotools'), and
``json.load``, a bare stdlib ``json.load`` of the two input files (a fresh interpreter too:
the floor every JSON-reading evaluator starts from). ``--plots`` adds the command with an
output directory (summary files and the three PNGs). ``--baseline-src DIR`` adds the command
with ``detpipe`` imported from another source tree (``git archive REV detpipe | tar -x -C
DIR``), for before/after figures measured in the same rounds. pycocotools takes minutes per
run, so it runs ``--pycocotools-rounds`` times (default 1: the reference arrays; its medians
are over those runs). Every process runs with the temp dir as its working directory, so
``-m detpipe.cli.main`` imports the tree on ``PYTHONPATH`` when one is given.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

PEERS = ("pycocotools", "faster-coco-eval")
EVALUATORS = ("detpipe", *PEERS)
PARSE = "json.load"  # the stdlib parse of both input files, nothing else
COMMAND = "command"  # the whole `detpipe evaluate --gt --dt --out metrics.json`


def make_problem(images: int, classes: int, dets_per_image: int, seed: int) -> tuple[dict, list[dict]]:
    """A val2017-like ground truth and a detector-like result list (both plain JSON objects)."""
    rng = np.random.default_rng(seed)
    cat_ids = np.sort(
        rng.choice(np.arange(1, classes * 2), classes, replace=False)
    )  # gaps, like COCO's 1..90
    freq = 1.0 / np.arange(1, classes + 1) ** 1.1
    freq[0] *= 2.5
    freq /= freq.sum()
    widths = rng.integers(400, 641, images)
    heights = rng.integers(300, 641, images)
    image_ids = rng.choice(np.arange(1, images * 100), images, replace=False)
    gt_images = [
        {"id": int(i), "file_name": f"{i:012d}.jpg", "width": int(w), "height": int(h)}
        for i, w, h in zip(image_ids, widths, heights, strict=True)
    ]
    counts = np.where(rng.random(images) < 0.01, 0, rng.negative_binomial(1.3, 0.15, images))
    anns: list[dict] = []
    dts: list[dict] = []
    for im, n_gt, w_img, h_img in zip(gt_images, counts, widths, heights, strict=True):
        side = np.exp(rng.normal(3.6, 1.0, n_gt)).clip(4, min(w_img, h_img) - 1)  # sqrt(area): median ~37 px
        aspect = np.exp(rng.normal(0, 0.5, n_gt))
        bw = np.minimum(side * np.sqrt(aspect), w_img - 1)
        bh = np.minimum(side / np.sqrt(aspect), h_img - 1)
        bx = rng.uniform(0, w_img - bw)
        by = rng.uniform(0, h_img - bh)
        cls = rng.choice(classes, n_gt, p=freq)
        crowd = rng.random(n_gt) < 0.01
        for j in range(n_gt):
            box = [round(float(v), 2) for v in (bx[j], by[j], bw[j], bh[j])]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": int(cat_ids[cls[j]]),
                    "bbox": box,
                    "area": round(
                        box[2] * box[3] * rng.uniform(0.55, 0.9), 2
                    ),  # a mask is smaller than its box
                    "iscrowd": int(crowd[j]),
                }
            )
        im_dets: list[tuple[list[float], int, float]] = []
        for j in range(n_gt):
            for _ in range(1 + (rng.random() < 0.15)):  # sometimes a duplicate
                if rng.random() > 0.85:
                    continue
                noise = rng.normal(0, 0.06, 4) * [bw[j], bh[j], bw[j], bh[j]]
                dw, dh = max(bw[j] + noise[2], 1.0), max(bh[j] + noise[3], 1.0)
                c = cls[j] if rng.random() < 0.9 else rng.integers(classes)
                score = float(np.clip(rng.beta(5, 2), 0.001, 1))
                im_dets.append(([bx[j] + noise[0], by[j] + noise[1], dw, dh], int(c), score))
        present = np.unique(cls) if n_gt else np.arange(classes)
        while len(im_dets) < dets_per_image:
            dw, dh = np.exp(rng.normal(3.5, 1.0, 2)).clip(2, [w_img, h_img])
            c = rng.choice(present) if rng.random() < 0.5 else rng.choice(classes, p=freq)
            box = [rng.uniform(0, w_img - dw), rng.uniform(0, h_img - dh), dw, dh]
            im_dets.append((box, int(c), float(rng.beta(1, 6))))
        for box, c, score in im_dets[:dets_per_image]:
            dts.append(
                {
                    "image_id": im["id"],
                    "category_id": int(cat_ids[c]),
                    "bbox": [round(float(v), 2) for v in box],
                    "score": round(max(score, 1e-4), 4),
                }
            )
    gt = {
        "images": gt_images,
        "categories": [{"id": int(c), "name": f"class{k}"} for k, c in enumerate(cat_ids)],
        "annotations": anns,
    }
    return gt, dts


def _timed(fn):  # (result, seconds)
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _cocoeval(module_coco, module_eval, gt_path: Path, dt_path: Path) -> tuple[dict, float, float]:
    with contextlib.redirect_stdout(io.StringIO()):
        (coco_gt, coco_dt), t_load = _timed(
            lambda: (lambda g: (g, g.loadRes(str(dt_path))))(module_coco(str(gt_path)))
        )

        def run():
            e = module_eval(coco_gt, coco_dt, "bbox")
            e.evaluate()
            e.accumulate()
            e.summarize()
            return e

        e, t_eval = _timed(run)
    arrays = {"stats": np.asarray(e.stats), "precision": e.eval["precision"], "recall": e.eval["recall"]}
    return arrays, t_load, t_eval


def run_pycocotools(gt_path: Path, dt_path: Path) -> tuple[dict, float, float]:
    """COCOeval on the files: (arrays, load seconds, evaluate+accumulate+summarize seconds)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return _cocoeval(COCO, COCOeval, gt_path, dt_path)


def run_faster_coco_eval(gt_path: Path, dt_path: Path) -> tuple[dict, float, float]:
    """faster-coco-eval's COCOeval_faster on the files, same phases."""
    from faster_coco_eval import COCO, COCOeval_faster

    return _cocoeval(COCO, COCOeval_faster, gt_path, dt_path)


def run_detpipe(gt_path: Path, dt_path: Path) -> tuple[dict, float, float]:
    """detpipe's evaluator on the files: (arrays, load seconds, evaluation seconds)."""
    from detpipe.data.coco import load_coco
    from detpipe.evaluate.cocoeval import evaluate_bbox
    from detpipe.evaluate.detections import load_detections

    (gt, dt), t_load = _timed(lambda: (lambda g: (g, load_detections(dt_path, g)))(load_coco(gt_path)))
    result, t_eval = _timed(lambda: evaluate_bbox(gt, dt))
    return {"stats": result.stats, "precision": result.precision, "recall": result.recall}, t_load, t_eval


RUNNERS = {"detpipe": run_detpipe, "pycocotools": run_pycocotools, "faster-coco-eval": run_faster_coco_eval}


def run_parse(gt_path: Path, dt_path: Path) -> tuple[None, float, float]:
    """``json.load`` of both files (the floor): (None, parse seconds, 0)."""

    def parse() -> None:
        for path in (gt_path, dt_path):
            with path.open("rb") as f:
                json.load(f)

    _, t_load = _timed(parse)
    return None, t_load, 0.0


RUNNERS = {**RUNNERS, PARSE: run_parse}


def worker(name: str, gt_path: Path, dt_path: Path, arrays_out: Path | None) -> None:
    """One evaluator in this process: prints its phase times as JSON, saves its arrays when asked."""
    arrays, t_load, t_eval = RUNNERS[name](gt_path, dt_path)
    if arrays_out is not None:
        np.savez(arrays_out, **arrays)
    print(json.dumps({"load_s": t_load, "eval_s": t_eval}))


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(src: Path | None) -> dict[str, str] | None:
    return None if src is None else {**os.environ, "PYTHONPATH": str(src.resolve())}


def run_process(
    name: str, gt_path: Path, dt_path: Path, arrays_out: Path | None, src: Path | None = None
) -> dict[str, float]:
    """The evaluator as a fresh process: its phases, the whole process's wall and CPU time."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, str(gt_path), str(dt_path)]
    if arrays_out is not None:
        cmd.append(str(arrays_out))
    cpu0, t0 = _child_cpu(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=gt_path.parent, env=_env(src))
    wall, cpu = time.perf_counter() - t0, _child_cpu() - cpu0
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    phases = json.loads(done.stdout.strip().splitlines()[-1])
    return {**phases, "process_s": wall, "cpu_s": cpu}


def run_command(gt_path: Path, dt_path: Path, out: Path, src: Path | None = None) -> dict[str, Any]:
    """The whole ``detpipe evaluate`` as a fresh process (``src``: detpipe imported from there)."""
    cmd = [sys.executable, "-m", "detpipe.cli.main", "-q", "evaluate", "--gt", str(gt_path)]
    cmd += ["--dt", str(dt_path), "--out", str(out)]
    cpu0, t0 = _child_cpu(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_env(src), cwd=gt_path.parent)
    wall, cpu = time.perf_counter() - t0, _child_cpu() - cpu0
    if done.returncode:
        raise SystemExit(f"detpipe evaluate failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json" if out.is_dir() else out).read_text())
    shutil.rmtree(out) if out.is_dir() else out.unlink()
    return {"process_s": wall, "cpu_s": cpu, "coco_stats": metrics["coco_stats"]}


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # one evaluator in a fresh process (see run_process)
        worker(argv[1], Path(argv[2]), Path(argv[3]), Path(argv[4]) if len(argv) > 4 else None)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000, help="images (default: 5000, val2017)")
    parser.add_argument("--classes", type=int, default=80, help="classes (default: 80)")
    parser.add_argument("--dets", type=int, default=100, help="detections per image (default: 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of every evaluator, interleaved (default: 3)"
    )
    parser.add_argument(
        "--pycocotools-rounds",
        type=int,
        default=1,
        help="runs of pycocotools (minutes each; default: 1, the reference arrays)",
    )
    parser.add_argument(
        "--plots", action="store_true", help="also time the command writing an output dir with plots"
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also time the command with detpipe imported from this source tree "
        "(`git archive REV detpipe | tar -x -C DIR`), interleaved with the others",
    )
    parser.add_argument(
        "--src",
        type=Path,
        default=None,
        help="import detpipe from this source tree in detpipe's processes (default: the installed one; "
        "e.g. `git archive HEAD detpipe | tar -x -C DIR` leaves out uncommitted changes)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    gt, dts = make_problem(args.images, args.classes, args.dets, args.seed)
    n_crowd = sum(a["iscrowd"] for a in gt["annotations"])
    print(
        f"problem: {len(gt['images'])} images, {len(gt['annotations'])} gt boxes ({n_crowd} crowd), "
        f"{len(dts)} detections, {len(gt['categories'])} classes; {args.rounds} rounds"
    )
    commands = {COMMAND: args.src}  # name -> source tree (None: the installed one)
    if args.plots:
        commands["command+plots"] = args.src
    if args.baseline_src is not None:
        commands["baseline command"] = args.baseline_src
    names = (*EVALUATORS, PARSE, *commands)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    load_avg = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = Path(tmp) / "gt.json", Path(tmp) / "dt.json"
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text(json.dumps(dts))
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate: none always goes first
            for name in order:
                if name == "pycocotools" and r >= args.pycocotools_rounds:
                    continue
                if name in commands:
                    out = Path(tmp) / ("out" if name == "command+plots" else "metrics.json")
                    runs[name].append(run_command(gt_path, dt_path, out, commands[name]))
                    t = runs[name][-1]
                    print(
                        f"  round {r + 1}/{args.rounds} {name:<17} "
                        f"process {t['process_s']:7.2f} s  (CPU {t['cpu_s']:6.2f} s)"
                    )
                    continue
                arrays = Path(tmp) / f"{name}.npz" if r == 0 and name != PARSE else None
                runs[name].append(run_process(name, gt_path, dt_path, arrays, args.src))
                t = runs[name][-1]
                print(
                    f"  round {r + 1}/{args.rounds} {name:<17} evaluate {t['eval_s']:7.2f} s  "
                    f"load {t['load_s']:6.2f} s  process {t['process_s']:7.2f} s  (CPU {t['cpu_s']:6.2f} s)"
                )
            load_avg.append(os.getloadavg())
        arrays = {name: dict(np.load(Path(tmp) / f"{name}.npz")) for name in EVALUATORS}

    ours, ref = arrays["detpipe"], arrays["pycocotools"]
    identical = all(np.array_equal(ours[k], ref[k]) for k in ("stats", "precision", "recall"))
    commands_identical = all(
        np.array_equal(np.array(t["coco_stats"], np.float64), ref["stats"])
        for name in commands
        for t in runs[name]
        if name != "baseline command"
    )
    identical = identical and commands_identical
    max_diff = {peer: float(np.abs(ours["stats"] - arrays[peer]["stats"]).max()) for peer in PEERS}
    med = {
        name: {
            phase: statistics.median(t[phase] for t in runs[name])
            for phase in ("eval_s", "load_s", "process_s")
        }
        for name in EVALUATORS
    }
    for name in EVALUATORS:
        med[name]["cpu_s"] = statistics.median(t["cpu_s"] for t in runs[name])
    for name in (PARSE, *commands):
        keys = [k for k in ("process_s", "cpu_s", "load_s") if k in runs[name][0]]
        med[name] = {k: statistics.median(t[k] for t in runs[name]) for k in keys}
    for name in EVALUATORS:
        med[name]["load_eval_s"] = statistics.median(t["load_s"] + t["eval_s"] for t in runs[name])
    phases = (
        ("eval_s", "evaluate+accumulate+summarize"),
        ("load_s", "load gt + detections"),
        ("load_eval_s", "load + evaluate"),
        ("process_s", "whole process (start, imports, load, evaluate)"),
    )
    ratios = {
        peer: {phase: round(med[peer][phase] / med["detpipe"][phase], 2) for phase, _ in phases}
        for peer in PEERS
    }
    # The whole command against the strongest peer's whole process and against the bare parse.
    command_ratios = {
        name: {
            "faster_coco_eval_over_command": round(
                med["faster-coco-eval"]["process_s"] / med[name]["process_s"], 2
            ),
            "command_over_json_load": round(med[name]["process_s"] / med[PARSE]["process_s"], 2),
            "cpu_faster_coco_eval_over_command": round(
                med["faster-coco-eval"]["cpu_s"] / med[name]["cpu_s"], 2
            ),
            "cpu_command_over_json_load": round(med[name]["cpu_s"] / med[PARSE]["cpu_s"], 2),
        }
        for name in commands
    }
    figures = {
        "date": date.today().isoformat(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "versions": {"pycocotools": version("pycocotools"), "faster-coco-eval": version("faster-coco-eval")},
        "images": len(gt["images"]),
        "gt_boxes": len(gt["annotations"]),
        "detections": len(dts),
        "classes": len(gt["categories"]),
        "rounds": args.rounds,
        "median_s": {name: {k: round(v, 3) for k, v in m.items()} for name, m in med.items()},
        "runs_s": {
            name: [{k: round(v, 3) for k, v in t.items() if k != "coco_stats"} for t in ts]
            for name, ts in runs.items()
        },
        "ratio_peer_over_detpipe": ratios,
        "command_ratios": command_ratios,
        "src": None if args.src is None else str(args.src),
        "baseline_src": None if args.baseline_src is None else str(args.baseline_src),
        "load_average_1_5_15": [[round(v, 2) for v in la] for la in load_avg],
        "stats_identical_to_pycocotools": identical,
        "max_abs_stat_diff": max_diff,
        "stats": [round(float(s), 6) for s in ours["stats"]],
    }
    print(
        f"machine: {figures['cpu']}, {figures['cores']} cores, {figures['date']}; "
        f"medians of {args.rounds} runs"
    )
    print(f"{'':48}{'detpipe':>9}{'pycocotools':>13}{'ratio':>7}{'faster-coco':>13}{'ratio':>7}")
    for phase, label in phases:
        cells = "".join(f"{med[p][phase]:>12.2f}s{ratios[p][phase]:>6.1f}x" for p in PEERS)
        print(f"{label:48}{med['detpipe'][phase]:>8.2f}s{cells}")
    print(
        f"{'json.load of both files (stdlib, fresh process)':48}{med[PARSE]['process_s']:>8.2f}s"
        f"  (parse {med[PARSE]['load_s']:.2f} s, CPU {med[PARSE]['cpu_s']:.2f} s)"
    )
    for name, cr in command_ratios.items():
        print(
            f"{'whole ' + name:48}{med[name]['process_s']:>8.2f}s  (CPU {med[name]['cpu_s']:.2f} s): "
            f"faster-coco-eval / it {cr['faster_coco_eval_over_command']:.2f}x "
            f"(CPU {cr['cpu_faster_coco_eval_over_command']:.2f}x), "
            f"it / json.load {cr['command_over_json_load']:.2f}x "
            f"(CPU {cr['cpu_command_over_json_load']:.2f}x)"
        )
    print(f"load average (1/5/15 min) at start and after each round: {figures['load_average_1_5_15']}")
    print(f"stats: {' '.join(f'{s:.4f}' for s in ours['stats'])}")
    print(
        f"identical to pycocotools (stats, precision, recall; the command's coco_stats): {identical} "
        f"(max |diff| {max_diff['pycocotools']:.1e})"
    )
    print(f"max |diff| of the 12 stats vs faster-coco-eval: {max_diff['faster-coco-eval']:.1e}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not identical:
        print("FAIL: results differ from pycocotools", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
