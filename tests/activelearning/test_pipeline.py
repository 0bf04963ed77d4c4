"""The active-learning experiment: the cells it plans, the seed set (the subsets' own p list), the
oracle, the compiled ``active_learning`` pipeline (IR read back) and a 2-round run on Kubeflow's
local runner that trains every cell and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detpipe.activelearning.config import CellConfig, plan_cells
from detpipe.activelearning.labeled import reveal, seed_set
from detpipe.data.coco import load_coco
from detpipe.errors import InvalidInput
from detpipe.pipelines.compile import compile_pipeline, load_compiled
from detpipe.pipelines.profiles import arguments
from detpipe.pipelines.settings import PipelineSettings
from detpipe.report.html import external_references
from detpipe.subsets.config import subset_size


def test_plan_adds_the_random_baseline_and_refuses_bad_axes():
    cells = plan_cells(["uncertainty", "diversity"], [0, 1.0])
    assert cells == [
        {"strategy": s, "seed": seed} for s in ("uncertainty", "diversity", "random") for seed in (0, 1)
    ]
    assert plan_cells(["random"], [3]) == [{"strategy": "random", "seed": 3}]
    for strategies, seeds in ((["greedy"], [0]), (["random", "random"], [0]), ([], [0]), (["random"], [-1]),
                              (["random"], [0, 0]), (["random"], [0.5]), (["random"], [])):  # fmt: skip
        with pytest.raises(InvalidInput):
            plan_cells(strategies, seeds)


def test_cell_settings_are_checked(tmp_path):
    ok = CellConfig(
        data=tmp_path, out=tmp_path / "o", strategy="entropy", seed=2, finetune=True, finetune_epochs=5
    )
    assert ok.name == "entropy_s2_ft" and ok.round_epochs(0) == 30 and ok.round_epochs(1) == 5
    assert ok.pick_seed(1) == 2001
    for bad in ({"strategy": "greedy"}, {"budget": 0}, {"seed_fraction": 100.0}, {"seed_fraction": 0.0},
                {"rounds": -1}, {"epochs": 0}):  # fmt: skip
        with pytest.raises(InvalidInput):
            CellConfig(data=tmp_path, out=tmp_path / "o", **bad)


def test_the_seed_set_is_the_subsets_proportional_list(small_data, tmp_path):
    from detpipe.subsets.config import SubsetsConfig
    from detpipe.subsets.generate import generate

    ann = small_data.root / "annotations" / "instances_train2017.json"
    generate(
        SubsetsConfig(annotations=ann, out=tmp_path / "subsets", fractions=[10.0], strategies=["p"], seed=3)
    )
    listed = (tmp_path / "subsets" / "train2017_10_p.txt").read_text().split()
    gt = load_coco(ann)
    names = seed_set(gt, 10.0, 3)
    assert sorted(f"./images/train2017/{n}" for n in names) == sorted(listed)
    assert seed_set(gt, 10.0, 3) == names and seed_set(gt, 10.0, 4) != names

    counts = reveal(gt, names[:3], tmp_path / "labeled.json")
    labeled = load_coco(tmp_path / "labeled.json")
    assert sorted(labeled.file_names) == sorted(names[:3])
    wanted = {int(i) for i, n in zip(gt.image_ids, gt.file_names, strict=True) if n in names[:3]}
    truth = [a for a in gt.raw["annotations"] if a["image_id"] in wanted]
    assert sorted(labeled.raw["annotations"], key=lambda a: a["id"]) == sorted(truth, key=lambda a: a["id"])
    assert counts == {"images": 3, "annotations": len(truth)}
    assert labeled.raw["categories"] == gt.raw["categories"]
    with pytest.raises(InvalidInput, match=r"has no image 'elsewhere\.jpg'"):
        reveal(gt, ["elsewhere.jpg"], tmp_path / "x.json")


def test_compiles_with_its_parameters(tmp_path):
    settings = PipelineSettings(target="cluster", image="reg.local/detpipe:t")
    path = compile_pipeline("active_learning", settings, tmp_path / "al.yaml")
    spec, platform = load_compiled(path.read_text())
    assert spec["pipelineInfo"]["name"] == "active-learning"
    tasks = spec["root"]["dag"]["tasks"]
    loop_name = next(name for name in tasks if name.startswith("for-loop"))
    assert set(tasks) == {"data-op", "al-plan-op", loop_name, "al-report-op"}
    assert set(tasks["al-report-op"]["dependentTasks"]) == {loop_name}  # the report after every cell
    loop = tasks[loop_name]
    items = loop["parameterIterator"]["items"]["inputParameter"]
    assert loop["inputs"]["parameters"][items]["taskOutputParameter"]["producerTask"] == "al-plan-op"
    plan_inputs = tasks["al-plan-op"]["inputs"]["parameters"]
    assert {k: v["componentInputParameter"] for k, v in plan_inputs.items()} == {"strategies": "strategies",
                                                                                "seeds": "seeds"}  # fmt: skip
    (cell_task,) = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"].values()
    inputs = cell_task["inputs"]["parameters"]
    assert inputs["cell"]["componentInputParameter"] == f"{items}-loop-item"
    for name in (
        "rounds",
        "budget",
        "seed_fraction",
        "finetune",
        "finetune_epochs",
        "epochs",
        "arch",
        "runs",
    ):
        assert inputs[name]["componentInputParameter"] == f"pipelinechannel--{name}", name
    assert cell_task["cachingOptions"] == {}  # training is never served from cache
    params = spec["root"]["inputDefinitions"]["parameters"]
    defaults = {k: params[k].get("defaultValue") for k in ("strategies", "seeds", "rounds", "finetune")}
    assert defaults == {"strategies": ["uncertainty", "entropy", "diversity", "random"], "seeds": [0, 1, 2],
                        "rounds": 5, "finetune": False}  # fmt: skip
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"reg.local/detpipe:t"}
    gpu = executors["exec-al-cell-op"]["container"]["resources"]["accelerator"]
    assert (gpu["resourceType"], gpu["resourceCount"]) == ("nvidia.com/gpu", "1")
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for store_step in ("exec-al-cell-op", "exec-al-report-op"):  # the records go to the store
        assert k8s[store_step]["secretAsEnv"][0]["secretName"] == "detpipe-minio"
    # the quick profile names only parameters the pipeline has (arguments() refuses others)
    assert set(arguments("active_learning", quick=True)) <= set(params)


TINY = {"synth_images": 40, "synth_imgsz": 64, "synth_classes": 2, "strategies": ["uncertainty"],
        "seeds": [0], "rounds": 2, "budget": 6, "seed_fraction": 20.0, "epochs": 1, "imgsz": 64, "batch": 8,
        "power_law": [0.6, 1.5, 0.5]}  # fmt: skip


@pytest.mark.slow
def test_a_two_round_local_run_trains_every_cell_and_reports(tmp_path):
    """``detpipe pipeline run --pipeline active_learning --quick`` (kfp.local), as ``make al`` runs it."""
    workdir = tmp_path / "al"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    cmd = [sys.executable, "-m", "detpipe.cli.main", "pipeline", "run", "--pipeline", "active_learning",
           "--quick", "--workdir", str(workdir), *sets]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((workdir / "run_summary.json").read_text())
    assert summary["status"] == "SUCCESS"
    cells = sorted(t["task"] for t in summary["tasks"] if t["task"].endswith("al-cell-op"))
    assert cells == [f"for-loop-1-iteration-{i}/al-cell-op" for i in (0, 1)]
    assert {t["task"] for t in summary["tasks"]} - set(cells) == {"data-op", "al-plan-op", "al-report-op"}

    runs = workdir / "store" / "al" / "local"
    assert sorted(p.name for p in runs.iterdir()) == ["random_s0", "uncertainty_s0"]
    for name in ("random_s0", "uncertainty_s0"):
        filed = sorted(p.name for p in (runs / name).iterdir())
        assert filed == ["cell.json", "round-0.json", "round-1.json", "round-2.json"]
    rounds = [json.loads((runs / "uncertainty_s0" / f"round-{k}.json").read_text()) for k in range(3)]
    annotated = rounds[0]["annotated_images"]
    seed_n = subset_size(20.0, annotated)  # 20 % of the training images with annotations
    assert rounds[0]["labeled_images"] == seed_n
    assert [r["labeled_images"] for r in rounds] == [seed_n, seed_n + 6, seed_n + 12]
    assert [r["picked"] for r in rounds[:2]] == [6, 6] and "picked" not in rounds[2]

    by_task = {t["task"]: t for t in summary["tasks"]}
    cell_dirs = {
        by_task[c]["metadata"]["result"]["name"]: Path(by_task[c]["artifacts"]["result"]) for c in cells
    }
    # the same seed: the same seed set for both strategies; each round's picks joined the next labeled set
    first = {n: load_coco(d / "round-0" / "labeled.json").file_names for n, d in cell_dirs.items()}
    assert sorted(first["uncertainty_s0"]) == sorted(first["random_s0"])
    d = cell_dirs["uncertainty_s0"]
    picks = [p["image"] for p in json.loads((d / "round-0" / "mine" / "selection.json").read_text())["picks"]]
    after = load_coco(d / "round-1" / "labeled.json").file_names
    assert sorted(after) == sorted([*first["uncertainty_s0"], *picks])

    report_task = by_task["al-report-op"]
    report_dir = Path(report_task["artifacts"]["report"])
    report = json.loads((report_dir / "report.json").read_text())
    assert list(report["strategies"]) == ["random", "uncertainty"]
    assert [p["labeled"]["mean"] for p in report["strategies"]["uncertainty"]["points"]] == [
        seed_n,
        seed_n + 6,
        seed_n + 12,
    ]
    assert report["saving"]["uncertainty"]["seeds"] == [0]
    assert report["power_law"]["full_images"] == annotated and report["settings"]["finetune"] is False
    assert (report_dir / "curves.png").is_file()
    page = Path(report_task["artifacts"]["page"]).read_text()
    assert external_references(page) == [] and page.count('src="data:image/png;base64,') == 1
    assert Path(report_task["artifacts"]["summary"]).read_text().startswith("# Active-learning report\n")
    # the run table ends with the report's headline and where report.md is
    assert res.stdout.rstrip().endswith(str(report_dir / "report.md"))
    assert "uncertainty vs random" in res.stdout
