"""What ``detpipe subsets`` writes: list files, ``class_distribution.csv``, ``summary.json``, a table.

    write_lists(tmp, subsets, lines, split)         # train2017_0.3125_p.txt, ...
    write_class_csv(tmp / "class_distribution.csv", subsets, counts)
    summary = build_summary(...); write_json(tmp / "summary.json", summary)
    print(format_table(summary))

List files hold one image path per line (prefix + ``file_name``), in annotation-file order.
CSV columns: ``strategy, pct, class_id, class_name, images, instances, share, full_share,
rel_deviation, small, medium, large`` (``rel_deviation`` is empty for a class without
instances in the full set).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detpipe.io import fsync_path, write_text
from detpipe.subsets.config import format_pct, list_name, pct_number
from detpipe.subsets.counts import SIZE_BINS, FilterResult, ImageCounts, SubsetStats

CSV_COLUMNS: tuple[str, ...] = (
    "strategy", "pct", "class_id", "class_name", "images", "instances", "share", "full_share",
    "rel_deviation", "small", "medium", "large",
)  # fmt: skip


@dataclass(frozen=True)
class Subset:
    """One drawn subset: its strategy, percentage, rows of the filtered list and statistics."""

    strategy: str
    pct: float
    rows: np.ndarray
    stats: SubsetStats


def _num(v: float, digits: int = 6) -> float | None:
    """A float for JSON: rounded to ``digits`` significant digits; NaN -> None."""
    if not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}")


def write_lists(out: Path, subsets: list[Subset], lines: list[str], split: str) -> list[str]:
    """Write one ``<split>_<pct>_<strategy>.txt`` per subset; return the file names.

    ``out`` must be the temp directory of :func:`detpipe.io.atomic_dir`, which makes the
    whole set appear at once: the files are written in place, then fsynced together with
    the directory (one temp file, rename and directory sync per file cost more than the
    writing itself on the 45 lists of COCO train, 70 MB).

    Args:
        out: directory to write into.
        subsets: the subsets; their rows index ``lines``.
        lines: the image path of each row of the filtered list (prefix + file_name).
        split: the split name that starts each file name.
    """
    line_nl = [line + "\n" for line in lines]
    names = []
    for s in subsets:
        name = list_name(split, s.pct, s.strategy)
        with (out / name).open("wb") as f:
            f.write("".join(map(line_nl.__getitem__, s.rows.tolist())).encode("utf-8"))
        names.append(name)
    for name in names:  # after all the writes, so the kernel flushes them together
        fsync_path(out / name)
    fsync_path(out)
    return names


def write_class_csv(path: Path, subsets: list[Subset], counts: ImageCounts) -> None:
    """One row per (strategy, fraction, class); see the module docstring for the columns."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    full_share = counts.shares
    for s in subsets:
        st, pct = s.stats, format_pct(s.pct)
        for c in range(counts.num_classes):
            dev = st.rel_dev[c]
            writer.writerow(
                [
                    s.strategy,
                    pct,
                    int(counts.class_ids[c]),
                    counts.class_names[c],
                    int(st.class_images[c]),
                    int(st.class_instances[c]),
                    f"{st.shares[c]:.8g}",
                    f"{full_share[c]:.8g}",
                    f"{dev:.8g}" if math.isfinite(dev) else "",
                    *(int(v) for v in st.class_sizes[c]),
                ]
            )
    write_text(path, buf.getvalue())


def _size_mix(sizes: np.ndarray) -> dict[str, float | None]:
    total = sizes.sum()
    return {b: _num(sizes[i] / total if total else math.nan) for i, b in enumerate(SIZE_BINS)}


def build_summary(
    *,
    annotations: Path,
    split: str,
    image_prefix: str,
    seed: int,
    nested: bool,
    filtered: FilterResult,
    counts: ImageCounts,
    subsets: list[Subset],
    files: list[str],
    methods: dict[str, str],
) -> dict[str, Any]:
    """The content of ``summary.json`` (plain JSON types; NaN written as null)."""
    full_sizes = counts.full[counts.num_classes :].reshape(-1, 3)
    present = int((counts.full_instances > 0).sum())
    dropped = "images without annotations"
    if filtered.drop_crowd_only:
        dropped += " and images whose annotations are all iscrowd"
    rows = []
    for s, name in zip(subsets, files, strict=True):
        st = s.stats
        rows.append(
            {
                "strategy": s.strategy,
                "pct": pct_number(s.pct),
                "fraction": s.pct / 100,
                "file": name,
                "images": st.images,
                "instances": st.instances,
                "classes_present": st.classes_present,
                "all_classes_present": st.classes_present == present,
                "mean_rel_deviation": _num(st.mean_rel_dev),
                "max_rel_deviation": _num(st.max_rel_dev),
                "size_mix_deviation": {"mean": _num(st.mean_size_dev), "max": _num(st.max_size_dev)},
                "size_mix": _size_mix(st.class_sizes.sum(0)),
                "class_instances": st.class_instances.tolist(),
            }
        )
    summary: dict[str, Any] = {
        "annotations": str(annotations),
        "split": split,
        "image_prefix": image_prefix,
        "seed": seed,
        "nested": nested,
        "rounding": "images = round half up of pct/100 x kept images (at least 1)",
        "filter": {
            "images_in": filtered.images_in,
            "images_kept": len(filtered.images),
            "dropped": dropped,
            "dropped_empty": filtered.dropped_empty,
            "dropped_crowd_only": filtered.dropped_crowd_only,
            "crowd_only_kept": filtered.crowd_only_kept,
            "instances_counted": "non-crowd annotations"
            if filtered.drop_crowd_only
            else "all annotations (iscrowd included)",
        },
        "full": {
            "images": counts.num_images,
            "instances": int(counts.full_instances.sum()),
            "classes": counts.num_classes,
            "classes_with_instances": present,
            "size_mix": _size_mix(full_sizes.sum(0)),
            "class_ids": counts.class_ids.tolist(),
            "class_names": counts.class_names,
            "class_instances": counts.full_instances.astype(int).tolist(),
        },
        "methods": {k: v for k, v in methods.items() if any(s.strategy == k for s in subsets)},
        "deviation": (
            "relative deviation of class c: |share in subset - share in full set| / share in full set; "
            "size-mix deviation: half the L1 distance between a class's small/medium/large fractions "
            "in the subset and in the full set (classes present in the subset)"
        ),
        "subsets": rows,
    }
    summary.update(_p_vs_random(rows))
    return summary


def _p_vs_random(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean deviation of ``p`` against ``random`` at each fraction (when both were drawn)."""
    by = {(r["strategy"], r["pct"]): r for r in rows}
    pairs = []
    for r in rows:
        other = by.get(("random", r["pct"]))
        if r["strategy"] != "p" or other is None:
            continue
        p_dev, r_dev = r["mean_rel_deviation"], other["mean_rel_deviation"]
        ratio = p_dev / r_dev if p_dev is not None and r_dev else None
        pairs.append(
            {
                "pct": r["pct"],
                "p": p_dev,
                "random": r_dev,
                "ratio": _num(ratio) if ratio is not None else None,
            }
        )
    if not pairs:
        return {}
    small = [q for q in pairs if float(q["pct"]) <= 10]
    lower = all(q["p"] is not None and q["random"] is not None and q["p"] < q["random"] for q in small)
    return {"p_vs_random": pairs, "p_lower_than_random_up_to_10pct": lower if small else None}


def format_table(summary: dict[str, Any]) -> str:
    """A compact human-readable table of the summary (one row per fraction)."""
    f, full = summary["filter"], summary["full"]
    strategies = list(dict.fromkeys(r["strategy"] for r in summary["subsets"]))
    by = {(r["strategy"], r["pct"]): r for r in summary["subsets"]}
    pcts = list(dict.fromkeys(r["pct"] for r in summary["subsets"]))
    crowd = f", {f['dropped_crowd_only']} crowd-only" if f["dropped_crowd_only"] else ""
    out = [
        f"kept {f['images_kept']} of {f['images_in']} images (dropped {f['dropped_empty']} without "
        f"annotations{crowd}); {full['instances']} instances, {full['classes_with_instances']} classes",
        "relative deviation of class shares from the full set: mean (max); classes present",
        (f"{'%':>7} {'images':>7}  " + "".join(f"{s:<22}" for s in strategies)).rstrip(),
    ]
    for pct in pcts:
        cells = []
        for s in strategies:
            r = by.get((s, pct))
            if r is None:
                cells.append(f"{'-':<22}")
                continue
            mean, mx = r["mean_rel_deviation"], r["max_rel_deviation"]
            text = "n/a" if mean is None else f"{mean:.4f} ({mx:.3g})"
            cells.append(f"{text + '; ' + str(r['classes_present']):<22}")
        images = next(by[(s, pct)]["images"] for s in strategies if (s, pct) in by)
        out.append(f"{format_pct(pct):>7} {images:>7}  " + "".join(cells).rstrip())
    if summary.get("p_vs_random"):
        small = [q for q in summary["p_vs_random"] if float(q["pct"]) <= 10 and q["ratio"] is not None]
        if small:
            worse = [format_pct(q["pct"]) for q in small if q["ratio"] >= 1]
            verdict = "p lower at each" if not worse else f"p not lower at {', '.join(worse)} %"
            lo, hi = min(q["ratio"] for q in small), max(q["ratio"] for q in small)
            out.append(f"p / random mean deviation at fractions <= 10 %: {lo:.2f}-{hi:.2f} ({verdict})")
    return "\n".join(out)
