"""Independent subset draws (``draw_seeds``) and the overlap table between them, on a long tail.

The data are the long-tailed multi-label set of :mod:`subsets_cases` (3,000 images, 20 classes,
the rarest ~1/120 as frequent as the commonest). Six seeds give 15 pairs of draws per
(strategy, fraction); every number of the overlap table is recomputed from the list files
and the raw annotation dict with plain Python sets.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import logging
import math
from collections import Counter
from itertools import combinations, pairwise
from pathlib import Path

import pytest
from subsets_cases import cli, expected_stats, long_tailed_coco, write_coco

from detpipe.errors import InvalidInput
from detpipe.subsets import SubsetsConfig, generate
from detpipe.subsets.config import format_pct
from detpipe.subsets.draws import OVERLAP_COLUMNS, draw_dir, draw_seeds

FRACTIONS = (0.625, 1.25, 2.5, 5, 10, 20, 50, 100)
SEEDS = (0, 1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def coco() -> dict:
    return long_tailed_coco(3000, 20, seed=1)


@pytest.fixture(scope="module")
def annotations(coco, tmp_path_factory) -> Path:
    return write_coco(tmp_path_factory.mktemp("draws") / "instances_train2017.json", coco)


@pytest.fixture(scope="module")
def run(annotations) -> tuple[Path, dict]:
    out = annotations.parent / "subsets"
    summary = generate(
        SubsetsConfig(
            annotations=annotations,
            out=out,
            fractions=FRACTIONS,
            seed=0,
            draw_seeds=SEEDS[1:],
            progress=False,
        )
    )
    return out, summary


def _list(path: Path) -> list[str]:
    return [line.rsplit("/", 1)[1] for line in path.read_text().splitlines()]


def test_draw_seeds_keep_the_root_first_and_each_seed_once(caplog):
    with caplog.at_level(logging.INFO, logger="detpipe.subsets.draws"):
        assert draw_seeds(3, [1, 3, 2, 1]) == [3, 1, 2]
    assert caplog.text.count("drawn once") == 2
    assert draw_seeds(0, ()) == [0]


def test_layout_and_summaries(run):
    out, summary = run
    names = [f"train2017_{format_pct(f)}_{s}.txt" for s in ("p", "random") for f in FRACTIONS]
    assert summary["draws"] == {
        "seeds": list(SEEDS),
        "dirs": {"0": ".", **{str(s): f"draws/seed-{s}" for s in SEEDS[1:]}},
    }
    root = json.loads((out / "summary.json").read_text())
    assert root["draws"] == summary["draws"] and "overlap" not in root
    assert root["plots"] == ["images_objects.png", "p_per_class.png", "deviation.png", "overlap.png"]
    assert (out / "overlap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "draws").iterdir()) == [f"seed-{s}" for s in SEEDS[1:]]
    for s in SEEDS[1:]:
        d = out / "draws" / f"seed-{s}"
        assert sorted(p.name for p in d.iterdir()) == sorted(
            [*names, "summary.json", "class_distribution.csv"]
        )
        own = json.loads((d / "summary.json").read_text())
        assert own["seed"] == s
        assert set(own) == set(root) - {"draws", "plots"}  # same schema, no plots
        assert own["full"] == root["full"] and own["filter"] == root["filter"]
        assert [r["file"] for r in own["subsets"]] == names
        rows = list(csv.DictReader(io.StringIO((d / "class_distribution.csv").read_text())))
        assert {r["strategy"] for r in rows} == {"p", "random"} and len(rows) == len(names) * 20


def test_each_draw_is_the_strategy_code_with_its_seed(run, annotations, tmp_path):
    """Seed 3's draw = the root lists of a run with --seed 3: the same code, the seed alone differs."""
    out, _ = run
    alone = tmp_path / "seed3"
    generate(
        SubsetsConfig(
            annotations=annotations,
            out=alone,
            fractions=FRACTIONS,
            strategies=("p", "random"),
            seed=3,
            plots=False,
            progress=False,
        )
    )
    for path in sorted(alone.glob("*.txt")):
        assert (out / "draws" / "seed-3" / path.name).read_text() == path.read_text()
    for s in SEEDS[1:]:  # and each draw is a nested chain of its own
        for strategy in ("p", "random"):
            lists = [
                set(_list(out / draw_dir(out, s) / f"train2017_{format_pct(f)}_{strategy}.txt"))
                for f in FRACTIONS
            ]
            assert all(a <= b for a, b in pairwise(lists))
    p0 = _list(out / "train2017_10_p.txt")
    assert all(_list(out / "draws" / f"seed-{s}" / "train2017_10_p.txt") != p0 for s in SEEDS[1:])


def test_overlap_table_recomputed_from_the_lists(run, coco):
    out, summary = run
    table = json.loads((out / "overlap.json").read_text())
    assert table == summary["overlap"]
    assert table["seeds"] == list(SEEDS) and "Dice" in table["definition"]
    n_kept = summary["full"]["images"]
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    names, index = [c["name"] for c in cats], {c["id"]: i for i, c in enumerate(cats)}
    file_of = {im["id"]: im["file_name"] for im in coco["images"]}
    holds: dict[str, set[int]] = {}  # file name -> the classes on the image (crowd included, as counted)
    for a in coco["annotations"]:
        holds.setdefault(file_of[a["image_id"]], set()).add(index[a["category_id"]])

    def class_images(files) -> list[int]:
        got = Counter(c for f in files for c in holds[f])
        return [got[c] for c in range(len(names))]

    sample = _list(out / "train2017_10_p.txt")
    assert class_images(sample) == expected_stats(coco, sample)["class_images"]
    expected_pairs = []
    for strategy in ("p", "random"):  # topn is the same for every seed: not compared
        for f in FRACTIONS:
            name = f"train2017_{format_pct(f)}_{strategy}.txt"
            lists = {s: _list(draw_dir(out, s) / name) for s in SEEDS}
            for a, b in combinations(SEEDS, 2):
                common = sorted(set(lists[a]) & set(lists[b]))
                ca, cb, both = class_images(lists[a]), class_images(lists[b]), class_images(common)
                dice = {c: 200 * both[c] / (ca[c] + cb[c]) for c in range(len(names)) if ca[c] and cb[c]}
                top = max(dice, key=lambda c: (dice[c], -c))  # the first class on ties
                n = len(lists[a])
                expected_pairs.append(
                    {
                        "strategy": strategy,
                        "pct": f,
                        "seed_a": a,
                        "seed_b": b,
                        "images": n,
                        "common_images": len(common),
                        "overlap_pct": round(100 * len(common) / n, 2),
                        "expected_random_pct": round(100 * n / n_kept, 2),
                        "max_class_overlap_pct": round(dice[top], 2),
                        "max_class": names[top],
                    }
                )
    assert table["pairs"] == expected_pairs
    rows = list(csv.DictReader(io.StringIO((out / "overlap.csv").read_text())))
    assert tuple(rows[0]) == OVERLAP_COLUMNS and len(rows) == len(expected_pairs)
    assert [int(r["common_images"]) for r in rows] == [q["common_images"] for q in expected_pairs]
    for strategy, per in table["summary"].items():
        for f in FRACTIONS:
            pairs = [q for q in expected_pairs if q["strategy"] == strategy and q["pct"] == f]
            row = per[format_pct(f)]
            exact = [100 * q["common_images"] / q["images"] for q in pairs]
            assert row["mean_overlap_pct"] == round(sum(exact) / len(exact), 2)
            assert row["max_overlap_pct"] == max(q["overlap_pct"] for q in pairs)
            assert row["max_class_overlap_pct"] == max(q["max_class_overlap_pct"] for q in pairs)
            assert row["expected_random_pct"] == pairs[0]["expected_random_pct"]
    assert table["summary"]["p"]["100"]["mean_overlap_pct"] == 100.0


def test_random_draws_overlap_as_independent_uniform_draws(run):
    """|A∩B| of two uniform draws of n of N is hypergeometric: mean n²/N, var n·(n/N)(1-n/N)(N-n)/(N-1).

    Given A, |A∩B| and |A∩C| are independent with the same mean, so the 15 pairs of 6 seeds
    are uncorrelated: a z-score pooled over pairs and fractions stays within a loose 4.
    """
    _, summary = run
    big_n = summary["full"]["images"]
    deviation, variance = 0.0, 0.0
    for f in FRACTIONS[:-1]:
        pairs = [q for q in summary["overlap"]["pairs"] if q["strategy"] == "random" and q["pct"] == f]
        n = pairs[0]["images"]
        mean, var = n * n / big_n, n * (n / big_n) * (1 - n / big_n) * (big_n - n) / (big_n - 1)
        got = sum(q["common_images"] for q in pairs) / len(pairs)
        assert abs(got - mean) <= 4 * math.sqrt(var / len(pairs)) + 1e-9, (f, got, mean)
        deviation += sum(q["common_images"] - mean for q in pairs)
        variance += len(pairs) * var
    assert abs(deviation / math.sqrt(variance)) < 4
    row = summary["overlap"]["summary"]["random"]["20"]
    assert abs(row["mean_overlap_pct"] - row["expected_random_pct"]) < 2


def test_p_draws_share_their_rare_class_images(run):
    """Below one image per class ``p`` covers classes first: the few images of the rarest classes
    go into every draw, so its draws overlap far more than random ones at the smallest fraction."""
    _, summary = run
    overlaps = {
        s: {pct: r["mean_overlap_pct"] for pct, r in per.items()}
        for s, per in summary["overlap"]["summary"].items()
    }
    expected = {pct: r["expected_random_pct"] for pct, r in summary["overlap"]["summary"]["p"].items()}
    print("mean image overlap between draws (%):")
    for pct in expected:
        print(f"  {pct:>6} %: p {overlaps['p'][pct]:6.2f}  random {overlaps['random'][pct]:6.2f}  "
              f"expected {expected[pct]:6.2f}")  # fmt: skip
    assert set(overlaps) == {"p", "random"}
    assert overlaps["p"]["0.625"] > 5 * expected["0.625"]
    assert all(0 <= v <= 100 for per in overlaps.values() for v in per.values())


def test_draw_dir(run, tmp_path):
    out, _ = run
    assert draw_dir(out, 0) == out
    assert draw_dir(out, 4) == out / "draws" / "seed-4"
    with pytest.raises(
        InvalidInput, match=r"no subset draw with seed 9 \(seeds available: 0, 1, 2, 3, 4, 5;"
    ):
        draw_dir(out, 9)
    with pytest.raises(InvalidInput, match=r"summary\.json: no such file"):
        draw_dir(tmp_path, 0)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(InvalidInput, match="no 'seed'"):
        draw_dir(tmp_path, 0)


def test_topn_is_drawn_once_and_repeated_seeds_add_nothing(annotations, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        summary = generate(
            SubsetsConfig(
                annotations=annotations,
                out=tmp_path / "a",
                fractions=(5, 50),
                strategies=("topn", "random"),
                seed=2,
                draw_seeds=(7, 2, 7),
                plots=False,
                progress=False,
            )
        )
    assert "topn does not depend on the seed" in caplog.text
    assert summary["draws"]["seeds"] == [2, 7]
    assert sorted(p.name for p in (tmp_path / "a" / "draws" / "seed-7").glob("*.txt")) == [
        "train2017_50_random.txt",
        "train2017_5_random.txt",
    ]
    assert {q["strategy"] for q in summary["overlap"]["pairs"]} == {"random"}
    assert len(summary["overlap"]["pairs"]) == 2  # one pair of seeds x two fractions

    for strategies, seeds in [(("p",), (0, 0)), (("topn",), (1, 2))]:
        out = tmp_path / "-".join(strategies)
        summary = generate(
            SubsetsConfig(
                annotations=annotations,
                out=out,
                fractions=(5,),
                strategies=strategies,
                seed=0,
                draw_seeds=seeds,
                plots=False,
                progress=False,
            )
        )
        assert summary["draws"] == {"seeds": [0], "dirs": {"0": "."}}
        assert "overlap" not in summary
        assert not (out / "draws").exists() and not (out / "overlap.json").exists()


def test_bad_draw_seeds(annotations, tmp_path):
    with pytest.raises(InvalidInput, match="seed -1 is not a non-negative integer"):
        generate(SubsetsConfig(annotations=annotations, out=tmp_path / "x", draw_seeds=(1, -1)))
    assert not (tmp_path / "x").exists()


def test_a_failure_while_writing_the_draws_leaves_the_old_output(annotations, tmp_path, monkeypatch):
    out = tmp_path / "subsets"
    cfg = SubsetsConfig(annotations=annotations, out=out, fractions=(5, 50), plots=False, progress=False)
    generate(cfg)
    before = sorted(p.name for p in out.iterdir())

    def broken(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(importlib.import_module("detpipe.subsets.generate"), "write_overlap", broken)
    with pytest.raises(OSError, match="No space left"):
        generate(SubsetsConfig(**{**cfg.__dict__, "draw_seeds": (1,)}))
    assert sorted(p.name for p in out.iterdir()) == before  # no draws/, no half of anything
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subsets"]  # no temp dir left


def test_cli_prints_where_the_draws_went(annotations, tmp_path):
    out = tmp_path / "o"
    res = cli(
        "subsets", "--annotations", str(annotations), "--out", str(out), "--fractions", "0.625,10,100",
        "--strategies", "p,random,topn", "--draw-seeds", "1,2", "--no-plots",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[-2] == f"draws of seeds 1, 2 (p, random lists) in {out}/draws/seed-1/, {out}/draws/seed-2/"
    table = json.loads((out / "overlap.json").read_text())
    p, r = table["summary"]["p"]["0.625"], table["summary"]["random"]["0.625"]
    assert lines[-1].startswith(
        f"image overlap between draws (seeds 0, 1, 2) at 0.625 %: p {p['mean_overlap_pct']:.2f} % "
        f"(largest per-class {p['max_class_overlap_pct']:.2f} %, {p['max_class']}); "
        f"random {r['mean_overlap_pct']:.2f} %"
    )
    assert lines[-1].endswith(f"two random draws share 0.64 % on average; per pair in {out}/overlap.csv")
    assert "topn does not depend on the seed" in res.stderr

    bad = cli(
        "subsets", "--annotations", str(annotations), "--out", str(tmp_path / "b"), "--draw-seeds", "1,x"
    )
    assert bad.returncode == 2
    assert "argument --draw-seeds: expected an integer, got 'x'" in bad.stderr
    assert not (tmp_path / "b").exists()


def test_help_explains_draws():
    res = cli("subsets", "--help")
    assert res.returncode == 0
    for text in ("--draw-seeds", "A draw is", "OUT/draws/seed-1/", "overlap.json", "100 x n/N", "Dice"):
        assert text in res.stdout
