"""Benchmark: detpipe's COCO bbox evaluator against pycocotools' COCOeval on a val2017-sized problem.

    .venv/bin/python benchmarks/evaluate.py                 # 5000 images, 100 dets/image, 80 classes
    .venv/bin/python benchmarks/evaluate.py --images 500    # quicker
    .venv/bin/python benchmarks/evaluate.py --json out.json # also write the figures as JSON

The problem is generated (seeded) to look like val2017 and a decent detector's output:
long-tailed class frequencies (one class ~30 % of the boxes), ~7.3 boxes per image with
some empty and some crowded images, COCO's small/medium/large mix, ~1 % crowd regions;
detections near most ground truth with box noise, sometimes a wrong class or a duplicate,
plus false positives on random boxes, scores at 4 decimals (so ties happen), 100 per image.

Both evaluators load the same two JSON files, then run in the same process:
pycocotools ``COCOeval.evaluate() + accumulate() + summarize()`` and
:func:`detpipe.evaluate.cocoeval.evaluate_bbox`. The script asserts that the 12 stats and
the full precision/recall arrays are identical, and prints the times and the speed-up.
Loading (``COCO()``/``loadRes`` vs ``load_coco``/``load_detections``) is timed separately.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np


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


def run_pycocotools(gt_path: Path, dt_path: Path) -> tuple[object, float, float]:
    """COCOeval on the files; returns (COCOeval, load seconds, evaluate+accumulate+summarize seconds)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        (coco_gt, coco_dt), t_load = _timed(
            lambda: (lambda g: (g, g.loadRes(str(dt_path))))(COCO(str(gt_path)))
        )

        def run() -> COCOeval:
            e = COCOeval(coco_gt, coco_dt, "bbox")
            e.evaluate()
            e.accumulate()
            e.summarize()
            return e

        e, t_eval = _timed(run)
    return e, t_load, t_eval


def run_detpipe(gt_path: Path, dt_path: Path) -> tuple[object, float, float]:
    """detpipe's evaluator on the files; returns (EvalResult, load seconds, evaluation seconds)."""
    from detpipe.data.coco import load_coco
    from detpipe.evaluate.cocoeval import evaluate_bbox
    from detpipe.evaluate.detections import load_detections

    (gt, dt), t_load = _timed(lambda: (lambda g: (g, load_detections(dt_path, g)))(load_coco(gt_path)))
    result, t_eval = _timed(lambda: evaluate_bbox(gt, dt))
    return result, t_load, t_eval


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000, help="images (default: 5000, val2017)")
    parser.add_argument("--classes", type=int, default=80, help="classes (default: 80)")
    parser.add_argument("--dets", type=int, default=100, help="detections per image (default: 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="time detpipe this many times, keep the best")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    gt, dts = make_problem(args.images, args.classes, args.dets, args.seed)
    n_crowd = sum(a["iscrowd"] for a in gt["annotations"])
    print(
        f"problem: {len(gt['images'])} images, {len(gt['annotations'])} gt boxes ({n_crowd} crowd), "
        f"{len(dts)} detections, {len(gt['categories'])} classes"
    )
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = Path(tmp) / "gt.json", Path(tmp) / "dt.json"
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text(json.dumps(dts))
        ours, ours_load, ours_eval = run_detpipe(gt_path, dt_path)
        for _ in range(args.repeat - 1):
            ours_eval = min(ours_eval, run_detpipe(gt_path, dt_path)[2])
        ref, ref_load, ref_eval = run_pycocotools(gt_path, dt_path)

    identical = (
        np.array_equal(ours.stats, ref.stats)
        and np.array_equal(ours.precision, ref.eval["precision"])
        and np.array_equal(ours.recall, ref.eval["recall"])
    )
    max_diff = float(np.abs(ours.stats - ref.stats).max())
    figures = {
        "date": date.today().isoformat(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "images": len(gt["images"]),
        "gt_boxes": len(gt["annotations"]),
        "detections": len(dts),
        "classes": len(gt["categories"]),
        "pycocotools_eval_s": round(ref_eval, 3),
        "detpipe_eval_s": round(ours_eval, 3),
        "speedup_eval": round(ref_eval / ours_eval, 2),
        "pycocotools_load_s": round(ref_load, 3),
        "detpipe_load_s": round(ours_load, 3),
        "speedup_load_plus_eval": round((ref_load + ref_eval) / (ours_load + ours_eval), 2),
        "stats_identical": identical,
        "max_abs_stat_diff": max_diff,
        "stats": [round(float(s), 6) for s in ours.stats],
    }
    print(f"machine: {figures['cpu']}, {figures['cores']} cores, {figures['date']}")
    print(f"{'':28}{'pycocotools':>12}{'detpipe':>10}{'ratio':>8}")
    print(
        f"{'evaluate+accumulate+summ.':28}{ref_eval:>11.2f}s{ours_eval:>9.2f}s{ref_eval / ours_eval:>7.1f}x"
    )
    print(f"{'load gt + detections':28}{ref_load:>11.2f}s{ours_load:>9.2f}s{ref_load / ours_load:>7.1f}x")
    print(f"stats: {' '.join(f'{s:.4f}' for s in ours.stats)}")
    print(f"identical stats and precision/recall arrays: {identical} (max |diff| of stats {max_diff:.1e})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not identical:
        print("FAIL: results differ from pycocotools", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
