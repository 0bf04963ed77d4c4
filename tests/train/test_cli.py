"""``detpipe train`` as a process: help, dry runs, and exit 2 with one line on bad input."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import TinyData, cli


def test_help_explains_launchers_and_hyperparameters() -> None:
    done = cli("train", "--help")
    assert done.returncode == 0
    for text in (
        "--launcher {local,torchrun,pytorchjob,trainjob}",
        "--resume [CKPT]",
        "--warmup-epochs",
        "--hsv-h",
        "--copy-paste",
        "--close-mosaic",
        "--amp, --no-amp",
        "GLOBAL batch",
        "--dry-run",
        "examples:",
    ):
        assert text in done.stdout, text


def test_local_dry_run_prints_the_resolved_config(tiny_data: TinyData, tmp_path: Path) -> None:
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 0.02\nscale: 0.9\n")
    done = cli(
        "train",
        "--data",
        str(tiny_data.full),
        "--model",
        "yolo11n",
        "--out",
        str(tmp_path / "o"),
        "--config",
        str(hyp),
        "--lr0",
        "0.05",
        "--warmup_epochs",
        "1",
        "--dry-run",
    )
    assert done.returncode == 0, done.stderr
    cfg = yaml.safe_load(done.stdout)
    assert (cfg["model"], cfg["lr0"], cfg["warmup_epochs"], cfg["extra"]) == (
        "yolo11n",
        0.05,
        1.0,
        {"scale": 0.9},
    )
    assert not (tmp_path / "o").exists()


def test_torchrun_dry_run_prints_the_command(tiny_data: TinyData, tmp_path: Path) -> None:
    out = tmp_path / "o"
    done = cli(
        "train",
        "--data",
        str(tiny_data.full),
        "--model",
        "yolo12n.yaml",
        "--out",
        str(out),
        "--batch",
        "16",
        "--device",
        "cpu",
        "--launcher",
        "torchrun",
        "--nproc-per-node",
        "4",
        "--dry-run",
    )
    assert done.returncode == 0, done.stderr
    cmd = shlex.split(done.stdout)
    assert cmd[:7] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "4",
        "-m",
    ]
    assert cmd[7] == "detpipe.train.worker"
    assert cmd[cmd.index("--batch") + 1] == "16" and cmd[cmd.index("--out") + 1] == str(out)

    multi = cli(
        "train",
        "--data",
        str(tiny_data.full),
        "--model",
        "yolo12n.yaml",
        "--out",
        str(out),
        "--batch",
        "16",
        "--device",
        "0,1",
        "--launcher",
        "torchrun",
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "10.0.0.1",
        "--dry-run",
    )
    assert multi.returncode == 0, multi.stderr
    cmd = shlex.split(multi.stdout)
    assert cmd[3:13] == [
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "10.0.0.1",
        "--master-port",
        "29500",
        "--nproc-per-node",
        "2",
    ]
    assert cmd[cmd.index("--device") + 1] == "cuda"  # each worker takes cuda:LOCAL_RANK


def test_multi_node_dry_run_does_not_read_the_data(tmp_path: Path) -> None:
    """Issue 21: the cluster's data path does not exist here; a dry run still prints the command."""
    data = "/cluster/datasets/coco/train2017_5_p.yaml"
    assert not Path(data).exists()
    argv = ["train", "--data", data, "--model", "yolo12n.yaml", "--out", str(tmp_path / "o"),
            "--batch", "16", "--device", "0,1", "--launcher", "torchrun", "--nnodes", "2",
            "--node-rank", "0", "--master-addr", "10.0.0.1",
            "--set", "scale=0.5", "--set", "degrees=5"]  # fmt: skip
    done = cli(*argv, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.count("\n") == 1 and " --set degrees=5 --set scale=0.5" in done.stdout
    )  # one line, clean
    cmd = shlex.split(done.stdout)
    assert cmd[2:5] == ["torch.distributed.run", "--nnodes", "2"]
    assert cmd[cmd.index("--data") + 1] == data
    assert f"--data {data}: not found here, not checked (dry run)" in done.stderr
    assert not (tmp_path / "o").exists()
    real = cli(*argv)  # without --dry-run the data is checked before anything starts
    assert real.returncode == 2 and "Traceback" not in real.stderr
    assert real.stderr.strip().splitlines()[-1] == f"detpipe train: error: --data {data}: no such file"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            ["--model", "yolo12n.pt"],
            "--model yolo12n.pt: no such file. detpipe never downloads weights from a "
            "hub: give a local path or an s3:// URI, or yolo12n.yaml to train from scratch",
        ),
        (
            ["--model", "yolo12q.yaml"],
            "yolo12q.yaml: unknown scale 'q' for yolo12 (scales: n, s, m, l, x, e.g. yolo12n.yaml)",
        ),
        (["--epochs", "0"], "epochs=0: must be >= 1"),
        (
            ["--set", "save_dir=/x"],
            "save_dir: set by detpipe itself, not allowed in a hyperparameter file or --set",
        ),
        (["--resume"], "--resume: {tmp}/o/weights/last.pt does not exist (nothing to resume in {tmp}/o)"),
        (
            ["--launcher", "torchrun", "--nproc-per-node", "3", "--batch", "8", "--device", "cpu"],
            "--batch 8 (global) does not split evenly over 3 processes",
        ),
        (
            ["--launcher", "torchrun", "--nnodes", "2", "--device", "cpu"],
            "--nnodes > 1 needs --master-addr (the address of node 0)",
        ),
        (
            ["--launcher", "pytorchjob", "--image", "i:1"],
            "--launcher pytorchjob needs --resume s3://BUCKET/PREFIX: the run is mirrored there, "
            "pods continue from it after a restart, and the outputs are fetched from it",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tiny_data: TinyData, tmp_path: Path, args: list[str], reason: str
) -> None:
    base = {"--data": str(tiny_data.full), "--model": "yolov8n.yaml", "--out": str(tmp_path / "o")}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    for flag, value in base.items():
        if flag not in argv:
            argv = [flag, value, *argv]
    done = cli("train", *argv, "--dry-run")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip().splitlines()[-1]
        == f"detpipe train: error: {reason.replace('{tmp}', str(tmp_path))}"
    )


def test_refuses_to_train_over_a_previous_run(tiny_data: TinyData, tmp_path: Path) -> None:
    out = tmp_path / "o"
    (out / "weights").mkdir(parents=True)
    (out / "args.yaml").write_text("epochs: 1\n")
    done = cli("train", "--data", str(tiny_data.full), "--model", "yolov8n.yaml", "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"detpipe train: error: --out {out}: not empty "
        "(use --resume to continue it or --overwrite to replace it)"
    )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    done = cli(
        "train",
        "--data",
        str(tiny_data.full),
        "--model",
        "yolov8n.yaml",
        "--out",
        str(tmp_path / "other"),
        "--overwrite",
    )
    assert done.returncode == 2 and "not empty (choose another --out)" in done.stderr
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
