"""Benchmark ``detpipe subsets`` against parsing its input: all 45 lists (and plots) vs ``json.load``.

The input is a synthetic, COCO-train-sized annotation file (118,287 images, ~1 % of them
empty, ~860k instances over 80 long-tailed classes with COCO's per-class instance counts,
multi-label images, ~1 % crowd annotations with RLE masks, polygon segmentations, the
usual ``info``/``licenses``/``coco_url``/... keys), so the file is of COCO's size class
(~450 MB). ``--no-segmentations`` drops the ``segmentation`` key (a detection-only file,
~120 MB, which json.load parses ~4x faster, so everything after parsing weighs more).
Each variant is generated once and cached (``--cache-dir``, default ``$TMPDIR/detpipe-bench``).

Each measurement runs in a fresh subprocess, alternating the two phases ``--repeats``
times, so peak RSS is per phase and the machine's noise hits both alike:

- ``parse``: ``json.load`` of the file, nothing else (the peer);
- ``generate``: :func:`detpipe.subsets.generate` without plots (load + validate + index +
  p/random/topn at the 15 study fractions + 45 lists + CSV + summary, atomically);
- ``command``: the whole ``detpipe subsets`` command as users run it (plots on, by default),
  in-process through :func:`detpipe.cli.main.main`, its imports included;
- ``plots``: the three PNG plots from the generated summary, timed on their own (once).

    .venv/bin/python benchmarks/subsets.py                # prints a table and the ratios
    .venv/bin/python benchmarks/subsets.py --no-segmentations --json runs/bench/subsets-noseg.json

Ratios are median(phase) / median(parse). Budgets: the whole command 3.0 (issue 12), and
``generate`` 2.0 on the file with segmentations; exit status 1 when one is exceeded. Issue
19's goal, the whole command at most 1.5x, is reported (met or not), not enforced. CPU
seconds and the load average after each round are recorded too: on a shared machine the
ratios within one interleaved run are what counts. CPU seconds include the command's
plot worker process (``detpipe.subsets.plot_worker``, started for files of 64 MiB and up),
whose time the wall clock partly hides on a second core.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks.subsets")

# COCO train2017 per-class instance counts (rounded from the published statistics), in
# category order; the synthetic file draws its long tail from these.
COCO_CLASSES: tuple[tuple[str, int], ...] = (
    ("person", 262465), ("bicycle", 7113), ("car", 43867), ("motorcycle", 8725),
    ("airplane", 5135), ("bus", 6069), ("train", 4571), ("truck", 9973), ("boat", 10759),
    ("traffic light", 12884), ("fire hydrant", 1865), ("stop sign", 1983),
    ("parking meter", 1285), ("bench", 9838), ("bird", 10806), ("cat", 4768), ("dog", 5508),
    ("horse", 6587), ("sheep", 9509), ("cow", 8147), ("elephant", 5513), ("bear", 1294),
    ("zebra", 5303), ("giraffe", 5131), ("backpack", 8720), ("umbrella", 11431),
    ("handbag", 12354), ("tie", 6496), ("suitcase", 6192), ("frisbee", 2682), ("skis", 6646),
    ("snowboard", 2685), ("sports ball", 6347), ("kite", 9076), ("baseball bat", 3276),
    ("baseball glove", 3747), ("skateboard", 5543), ("surfboard", 6126),
    ("tennis racket", 4812), ("bottle", 24342), ("wine glass", 7913), ("cup", 20650),
    ("fork", 5479), ("knife", 7770), ("spoon", 6165), ("bowl", 14358), ("banana", 9458),
    ("apple", 5851), ("sandwich", 4373), ("orange", 6399), ("broccoli", 7308),
    ("carrot", 7852), ("hot dog", 2918), ("pizza", 5821), ("donut", 7179), ("cake", 6353),
    ("chair", 38491), ("couch", 5779), ("potted plant", 8652), ("bed", 4192),
    ("dining table", 15714), ("toilet", 4157), ("tv", 5805), ("laptop", 4970),
    ("mouse", 2262), ("remote", 5703), ("keyboard", 2855), ("cell phone", 6434),
    ("microwave", 1673), ("oven", 3334), ("toaster", 225), ("sink", 5610),
    ("refrigerator", 2637), ("book", 24715), ("clock", 6334), ("vase", 6613),
    ("scissors", 1481), ("teddy bear", 4793), ("hair drier", 198), ("toothbrush", 1954),
)  # fmt: skip
# Classes that come in groups (many instances per image that has one).
_CROWDED = {"person": 4.1, "book": 5.5, "sheep": 4.6, "banana": 4.0, "donut": 3.6, "kite": 3.4,
            "car": 3.6, "bird": 3.4, "boat": 3.0, "chair": 3.0, "cow": 3.4, "carrot": 3.7,
            "broccoli": 3.2, "orange": 3.5, "apple": 3.4, "umbrella": 2.8, "bottle": 2.9}  # fmt: skip
# COCO's category ids skip a few numbers (1..90 for 80 classes).
_COCO_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]


def synth_coco_train(
    seed: int = 0, images: int = 118_287, empty_frac: float = 0.0086, segmentations: bool = True
) -> dict:
    """A COCO-train-like annotation dict (see the module docstring for its statistics).

    Without ``segmentations`` the annotations have no ``segmentation`` key (a detection-only
    file, as many exports are); everything else is drawn the same.
    """
    rng = np.random.default_rng(seed)
    names = [n for n, _ in COCO_CLASSES]
    inst = np.array([k for _, k in COCO_CLASSES], float)
    scale = images / 118_287
    per_img = np.array([_CROWDED.get(n, 1.0 + rng.uniform(0.5, 1.5)) for n in names])
    img_freq = inst / per_img  # images per class, COCO-like
    n_empty = round(images * empty_frac)
    n_full = images - n_empty
    # Distinct classes per image: 1 + Poisson, ~2.9 on average like COCO; classes drawn
    # without replacement (Gumbel top-k) with weights following the per-class image counts.
    k_img = np.minimum(1 + rng.poisson(1.9, n_full), 14)
    keys = np.log(img_freq)[None, :] + rng.gumbel(size=(n_full, len(names)))
    order = np.argsort(-keys, axis=1)
    take = np.arange(len(names))[None, :] < k_img[:, None]
    img_of = np.repeat(np.arange(n_full), k_img)
    cls_of = order[take]
    # Instances per (image, class): 1 + negative binomial with the class's group size.
    mean_extra = per_img[cls_of] - 1.0
    r = 0.7
    extra = rng.negative_binomial(r, r / (r + mean_extra))
    # rescale so the per-class totals follow COCO's counts
    got = np.bincount(cls_of, weights=1 + extra, minlength=len(names))
    keep_prob = np.clip(inst * scale / np.maximum(got, 1), 0, 1)
    extra = rng.binomial(extra, keep_prob[cls_of])
    n_inst = 1 + extra
    ann_img = np.repeat(img_of, n_inst)
    ann_cls = np.repeat(cls_of, n_inst)
    n_ann = len(ann_img)

    im_ids = np.sort(rng.choice(np.arange(1, 600_000), images, replace=False))
    perm = rng.permutation(images)  # which images are empty: spread over the file
    full_rows = np.sort(perm[:n_full])
    portrait = rng.random(images) < 0.25
    short = rng.choice(
        [480, 427, 425, 426, 428, 424, 360, 640], images, p=[0.5, 0.2, 0.06, 0.06, 0.06, 0.04, 0.04, 0.04]
    )
    widths = np.where(portrait, short, 640)
    heights = np.where(portrait, 640, short)
    row = full_rows[ann_img]
    img_w, img_h = widths[row].astype(float), heights[row].astype(float)
    # Object size: log-normal sqrt(area) with a per-class offset -> COCO-like 41/35/24 % mix.
    cls_size = rng.normal(0, 0.45, len(names))
    side = np.exp(rng.normal(np.log(38) + cls_size[ann_cls], 1.05))
    aspect = np.exp(rng.normal(0, 0.45, n_ann))
    bw = np.clip(side * np.sqrt(aspect) / 0.78, 1.0, img_w)
    bh = np.clip(side / np.sqrt(aspect) / 0.78, 1.0, img_h)
    bx = rng.random(n_ann) * (img_w - bw)
    by = rng.random(n_ann) * (img_h - bh)
    crowd = (rng.random(n_ann) < np.where(ann_cls == 0, 0.025, 0.004)) & (bw * bh > 40 * 40)
    # Polygons: vertices around the box's inscribed ellipse, more for bigger objects.
    n_vert = np.clip((6 + np.sqrt(bw * bh) / 3 + rng.normal(0, 3, n_ann)).astype(int), 4, 60)
    n_vert[crowd] = 0
    offs = np.concatenate([[0], np.cumsum(n_vert)])
    t = rng.random(offs[-1]) * 2 * np.pi
    seg_ann = np.repeat(np.arange(n_ann), n_vert)
    rad = rng.uniform(0.8, 1.0, offs[-1])
    cx, cy = bx + bw / 2, by + bh / 2
    px = np.round(cx[seg_ann] + np.cos(t) * rad * bw[seg_ann] / 2, 2)
    py = np.round(cy[seg_ann] + np.sin(t) * rad * bh[seg_ann] / 2, 2)
    xy = np.empty(2 * offs[-1])
    xy[0::2], xy[1::2] = px, py
    xy = xy.tolist()
    area = np.round(bw * bh * rng.uniform(0.45, 0.8, n_ann), 2).tolist()
    boxes = np.round(np.stack([bx, by, bw, bh], 1), 2).tolist()
    im_id_of_ann = im_ids[row].tolist()
    cat_ids = np.array(_COCO_IDS)[ann_cls].tolist()
    ann_ids = (np.arange(n_ann) * 3 + 100_000).tolist()
    crowd_l = crowd.tolist()
    anns = []
    for a in range(n_ann):
        if not segmentations:
            seg = None
        elif crowd_l[a]:
            h, w = int(img_h[a]), int(img_w[a])
            runs = rng.integers(1, 400, int(rng.integers(40, 400)))
            seg = {"counts": runs.tolist(), "size": [h, w]}
        else:
            seg = [xy[2 * offs[a] : 2 * offs[a + 1]]]
        ann = {
            "area": area[a],
            "iscrowd": int(crowd_l[a]),
            "image_id": im_id_of_ann[a],
            "bbox": boxes[a],
            "category_id": cat_ids[a],
            "id": ann_ids[a],
        }
        anns.append(ann if seg is None else {"segmentation": seg, **ann})
    imgs = [
        {
            "license": int(rng.integers(1, 9)),
            "file_name": f"{iid:012d}.jpg",
            "coco_url": f"http://images.cocodataset.org/train2017/{iid:012d}.jpg",
            "height": int(heights[i]),
            "width": int(widths[i]),
            "date_captured": "2013-11-14 11:18:45",
            "flickr_url": f"http://farm4.staticflickr.com/3153/{iid}_f3b8f4a5c1_z.jpg",
            "id": int(iid),
        }
        for i, iid in enumerate(im_ids.tolist())
    ]
    return {
        "info": {
            "description": "Synthetic COCO-train-like dataset (detpipe benchmark)",
            "version": "1.0",
            "year": 2017,
            "contributor": "detpipe",
            "date_created": "2017/09/01",
        },
        "licenses": [
            {"url": "http://creativecommons.org/licenses/by/2.0/", "id": i, "name": "CC BY"}
            for i in range(1, 9)
        ],
        "images": imgs,
        "annotations": anns,
        "categories": [
            {"supercategory": "thing", "id": cid, "name": n} for cid, n in zip(_COCO_IDS, names, strict=True)
        ],
    }


def ensure_file(cache_dir: Path, seed: int, images: int, segmentations: bool = True) -> Path:
    """The cached synthetic file, generated (atomically) when missing."""
    name = f"coco_like_{images}_{seed}" + ("" if segmentations else "_noseg")
    path = cache_dir / name / "annotations" / "instances_train2017.json"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"generating {path} (one-off, about a minute) ...", file=sys.stderr)
    text = json.dumps(synth_coco_train(seed, images, segmentations=segmentations), separators=(",", ":"))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    print(f"  {len(text) / 2**20:.0f} MiB in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


def _phase(name: str, path: Path, out: Path) -> dict:
    """Run one timed phase in this (fresh) process; return seconds and peak RSS."""
    parts: dict[str, float] = {}
    cpu0 = time.process_time()  # CPU seconds too: on a shared machine they vary less than wall
    kids0 = _children_cpu()  # the command's plot worker process (big files) counts as well
    if name == "parse":
        t0 = time.perf_counter()
        with path.open("rb") as f:
            json.load(f)
        seconds = time.perf_counter() - t0
    elif name == "generate":
        from detpipe.subsets import SubsetsConfig, generate

        t0 = time.perf_counter()
        summary = generate(SubsetsConfig(annotations=path, out=out, plots=False, progress=False))
        seconds = time.perf_counter() - t0
        parts = summary["timings"]
    elif name == "command":
        t0 = time.perf_counter()
        from detpipe.cli.main import main as detpipe_main

        with contextlib.redirect_stdout(io.StringIO()):  # the table; stdout carries the result
            rc = detpipe_main(["-q", "subsets", "--annotations", str(path), "--out", str(out)])
        seconds = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"detpipe subsets exited {rc}")
    elif name == "plots":
        from detpipe.subsets.plots import write_plots

        summary = json.loads((out / "summary.json").read_text())
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            write_plots(summary, Path(tmp))
        seconds = time.perf_counter() - t0
    else:
        raise ValueError(name)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = time.process_time() - cpu0 + _children_cpu() - kids0
    result = {"phase": name, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": rss_kib / 1024}
    child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if child_kib:
        result["child_peak_rss_mib"] = child_kib / 1024
    if name == "generate":
        result["parts"] = parts
    return result


def _children_cpu() -> float:
    """CPU seconds of this process's finished (waited-for) children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run_phase(name: str, path: Path, out: Path, src: Path | None = None) -> dict:
    """One phase in a fresh process; ``src``: import ``detpipe`` from that source tree instead."""
    cmd = [sys.executable, __file__, "--phase", name, "--file", str(path), "--out", str(out)]
    env = None if src is None else {**os.environ, "PYTHONPATH": str(src.resolve())}
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "detpipe-bench")
    ap.add_argument("--images", type=int, default=118_287, help="images in the synthetic file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-segmentations", dest="segmentations", action="store_false", help="detection-only file variant"
    )
    ap.add_argument("--repeats", type=int, default=3, help="alternating parse/generate runs")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also time the whole command with detpipe imported from this source tree (e.g. "
        "`git archive HEAD~1 detpipe | tar -x -C DIR`), interleaved with the others",
    )
    ap.add_argument(
        "--src",
        type=Path,
        default=None,
        help="import detpipe from this source tree in the other phases (default: the installed one)",
    )
    ap.add_argument("--phase", choices=["parse", "generate", "command", "plots"], help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        print(json.dumps(_phase(args.phase, args.file, args.out)))
        return 0

    path = ensure_file(args.cache_dir, args.seed, args.images, args.segmentations)
    out = args.cache_dir / "subsets-out"
    runs: dict[str, list[dict]] = {"parse": [], "generate": [], "command": []}
    if args.baseline_src is not None:
        runs["baseline"] = []
    load_avg = [os.getloadavg()]  # the machine's load: ratios are within rounds, absolute times are not
    for i in range(args.repeats):
        for name in runs:
            r = _run_phase(
                "command" if name == "baseline" else name,
                path,
                out,
                args.baseline_src if name == "baseline" else args.src,
            )
            runs[name].append(r)
            parts = "  " + ", ".join(f"{k} {v:.2f} s" for k, v in r.get("parts", {}).items())
            line = (
                f"run {i + 1}/{args.repeats} {name:9s} {r['seconds']:7.2f} s (CPU {r['cpu_seconds']:6.2f} s)"
            )
            line += f"  peak RSS {r['peak_rss_mib']:7.0f} MiB"
            if "child_peak_rss_mib" in r:
                line += f" (plot worker {r['child_peak_rss_mib']:.0f} MiB)"
            print(line + parts.rstrip(), file=sys.stderr)
        load_avg.append(os.getloadavg())
    plots = _run_phase("plots", path, out, args.src)
    summary = json.loads((out / "summary.json").read_text())
    parse_s = statistics.median(r["seconds"] for r in runs["parse"])
    gen_s = statistics.median(r["seconds"] for r in runs["generate"])
    cmd_s = statistics.median(r["seconds"] for r in runs["command"])
    budgets = {"command": 3.0, "generate": 2.0 if args.segmentations else None}
    goal = 1.5  # issue 19: the whole command, plots on, at most 1.5x json.load (reported, not enforced)
    base_s = statistics.median(r["seconds"] for r in runs["baseline"]) if runs.get("baseline") else None
    cpu = {k: statistics.median(r["cpu_seconds"] for r in v) for k, v in runs.items()}
    result = {
        "file": str(path),
        "file_mib": round(path.stat().st_size / 2**20, 1),
        "segmentations": args.segmentations,
        "images": summary["filter"]["images_in"],
        "non_empty_images": summary["filter"]["images_kept"],
        "instances": summary["full"]["instances"],
        "lists": len(summary["subsets"]),
        "parse_s": round(parse_s, 2),
        "generate_s": round(gen_s, 2),
        "ratio": round(gen_s / parse_s, 3),
        "command_s": round(cmd_s, 2),
        "command_ratio": round(cmd_s / parse_s, 3),
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_ratios": {k: round(v / cpu["parse"], 3) for k, v in cpu.items() if k != "parse"},
        "src": None if args.src is None else str(args.src),
        "baseline_command_s": None if base_s is None else round(base_s, 2),
        "baseline_command_ratio": None if base_s is None else round(base_s / parse_s, 3),
        "budgets": budgets,
        "command_goal": goal,
        "load_average_1_5_15": [[round(v, 2) for v in la] for la in load_avg],
        "plots_s": round(plots["seconds"], 2),
        "peak_rss_parse_mib": round(max(r["peak_rss_mib"] for r in runs["parse"])),
        "peak_rss_generate_mib": round(max(r["peak_rss_mib"] for r in runs["generate"])),
        "peak_rss_command_mib": round(max(r["peak_rss_mib"] for r in runs["command"])),
        "runs": runs,
        "p_vs_random": summary.get("p_vs_random"),
        "size_mix_deviation": {
            f"{r['strategy']}@{r['pct']}": r["size_mix_deviation"]["mean"] for r in summary["subsets"]
        },
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    print(
        f"\nfile               {result['file_mib']:.0f} MiB, {result['images']} images "
        f"({result['non_empty_images']} non-empty), {result['instances']} instances"
    )
    print(f"json.load (peer)   {parse_s:7.2f} s   peak RSS {result['peak_rss_parse_mib']} MiB")
    print(f"generate (45 lists){gen_s:7.2f} s   peak RSS {result['peak_rss_generate_mib']} MiB")
    print(f"whole command      {cmd_s:7.2f} s   peak RSS {result['peak_rss_command_mib']} MiB (plots on)")
    if base_s is not None:
        print(f"  ... baseline     {base_s:7.2f} s   ({args.baseline_src}), ratio {base_s / parse_s:.2f}")
    print(f"plots (separately) {plots['seconds']:7.2f} s")
    gen_budget = f"budget {budgets['generate']:.1f}" if budgets["generate"] else "no budget on this file"
    print(f"ratio generate/parse = {result['ratio']:.2f}  ({gen_budget})")
    print(f"ratio command/parse  = {result['command_ratio']:.2f}  (budget {budgets['command']:.1f})")
    met = "met" if result["command_ratio"] <= goal else "not met"
    print(f"goal (issue 19): whole command <= {goal}x json.load: {met}")
    print(f"load average (1/5/15 min) at start and after each round: {result['load_average_1_5_15']}")
    cpu_line = ", ".join(f"{k} {v:.2f}" for k, v in result["cpu_ratios"].items())
    print(f"CPU-time ratios to parse (median CPU s; parse {cpu['parse']:.2f} s): {cpu_line}")
    print(f"machine: {result['machine']}, Python {result['python']}, {result['date']}")
    print("\nmean relative deviation of class shares (p / random), and mean size-mix deviation:")
    sizes = result["size_mix_deviation"]
    for q in result["p_vs_random"] or []:
        size_p, size_r = sizes[f"p@{q['pct']}"] or 0, sizes[f"random@{q['pct']}"] or 0
        print(
            f"  {q['pct']!s:>7} %  p {q['p']:.4f}  random {q['random']:.4f}  ratio {q['ratio'] or 0:.3f}   "
            f"size mix p {size_p:.4f}  random {size_r:.4f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    over = result["command_ratio"] > budgets["command"] or (
        budgets["generate"] is not None and result["ratio"] > budgets["generate"]
    )
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
