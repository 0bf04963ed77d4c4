"""TrainConfig: precedence, validation, and the flag round trip torchrun workers rely on."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from detpipe.errors import InvalidInput
from detpipe.train.config import (
    HYPERPARAMETER_NAMES,
    TrainConfig,
    add_arguments,
    build_config,
    config_from_args,
    parse_device,
)


def _parse(argv: list[str]) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


BASE = ["--data", "d.yaml", "--model", "yolo12n.yaml", "--out", "runs/x"]


def test_defaults_are_ultralytics_and_scratch() -> None:
    from ultralytics.cfg import get_cfg

    cfg = _parse(BASE)
    default = get_cfg()
    for name in HYPERPARAMETER_NAMES:
        expected = getattr(default, name)
        assert getattr(cfg, name) == ("false" if name == "cache" and expected is False else expected), name
    assert cfg.pretrained is None and cfg.ultralytics_overrides()["pretrained"] is False
    assert cfg.device == "auto" and cfg.resume is None


def test_precedence_defaults_file_set_flags(tmp_path: Path) -> None:
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("epochs: 600\nlr0: 0.02\nmixup: 0.05\nscale: 0.5\nfliplr: 0.4\n")
    cfg = _parse([*BASE, "--config", str(hyp), "--set", "fliplr=0.25", "--set", "lr0=0.03", "--epochs", "7"])
    assert cfg.epochs == 7  # flag beats file
    assert cfg.lr0 == 0.03  # --set beats file
    assert cfg.mixup == 0.05  # file beats default
    assert cfg.extra == {"scale": 0.5, "fliplr": 0.25}
    assert cfg.patience == 100  # untouched default
    overrides = cfg.ultralytics_overrides()
    assert (overrides["epochs"], overrides["scale"], overrides["cache"]) == (7, 0.5, False)


def test_to_argv_round_trips_every_field(tmp_path: Path) -> None:
    cfg = build_config(
        "d.yaml",
        "yolo11s.yaml",
        "runs/y",
        flags={"epochs": 3, "amp": False, "plots": False, "cache": "disk", "optimizer": "SGD", "hsv_h": 0.0},
        sets={"degrees": 5.0, "multi_scale": 0.25},
        device="0,1",
        pretrained="s3://b/w.pt",
        resume="s3://b/ckpt/run",
    )
    assert _parse(cfg.to_argv()) == cfg


def test_overrides_are_accepted_by_ultralytics() -> None:
    from ultralytics.cfg import get_cfg

    cfg = build_config("d.yaml", "yolo12n.yaml", "o", flags={"cache": "ram"}, sets={"scale": 0.9})
    args = get_cfg(overrides={**cfg.ultralytics_overrides(), "model": "yolo12n.yaml"})
    assert (args.cache, args.scale, args.pretrained) == ("ram", 0.9, False)


@pytest.mark.parametrize(
    ("flags", "sets", "message"),
    [
        ({"epochs": 0}, {}, "epochs=0: must be >= 1"),
        ({"mosaic": 1.5}, {}, "mosaic=1.5: must be <= 1"),
        ({"lr0": "fast"}, {}, "lr0='fast': expected a number"),
        ({"epochs": 2.5}, {}, "epochs=2.5: expected an integer"),
        ({"optimizer": "Adagrad"}, {}, "optimizer='Adagrad': expected one of auto, SGD"),
        ({}, {"save_dir": "/tmp"}, "save_dir: set by detpipe itself"),
        ({}, {"not_a_key": 1}, "not_a_key: not an ultralytics train argument"),
    ],
)
def test_invalid_values_are_rejected(flags: dict, sets: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=None) as e:
        build_config("d.yaml", "yolo12n.yaml", "o", flags=flags, sets=sets)
    assert str(e.value).startswith(message)


def test_optimizer_and_cache_are_normalized() -> None:
    cfg = build_config("d.yaml", "m.yaml", "o", sets={"optimizer": "sgd", "cache": True})
    assert (cfg.optimizer, cfg.cache) == ("SGD", "ram")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- 1\n- 2\n", "expected a mapping of hyperparameters, got list"),
        ("epochs: [\n", "not valid YAML (line 2)"),
        ("model: yolo12x.yaml\n", "'model' is set by detpipe itself (use --model)"),
        ("project: runs\n", "'project' is set by detpipe itself"),
        ("lr: 0.1\n", "'lr' is not an ultralytics train argument"),
    ],
)
def test_bad_hyperparameter_files(tmp_path: Path, text: str, message: str) -> None:
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text(text)
    with pytest.raises(InvalidInput) as e:
        build_config("d.yaml", "yolo12n.yaml", "o", hyp_file=hyp)
    assert str(e.value) == f"--config {hyp}: {message}"


def test_data_must_be_a_yaml() -> None:
    with pytest.raises(InvalidInput, match="expected an ultralytics dataset YAML"):
        TrainConfig(data="coco.json", model="yolo12n.yaml", out="o")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", ("auto", ())),
        ("CPU", ("cpu", ())),
        ("cuda", ("cuda", ())),
        ("cuda:1", ("cuda", (1,))),
        ("0,2", ("cuda", (0, 2))),
    ],
)
def test_parse_device(text: str, expected: tuple) -> None:
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["gpu", "0,0", "1,a", ""])
def test_parse_device_rejects(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_device(text)


def _set_items(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]


def test_set_overrides_render_one_clean_flag_each_and_round_trip() -> None:
    """Issue 21: --set values were rendered ``scale=0.5\\n...`` (yaml's document end marker)."""
    from detpipe.train import launch, pytorchjob, trainjob
    from detpipe.train.worker import get_args_parser

    sets = {
        "scale": 0.5,
        "degrees": 5.0,
        "copy_paste_mode": "flip",
        "freeze": [0, 2, 1],
        "tracker": "a: b\nc",
    }
    cfg = build_config("/data/coco/d.yaml", "yolo12n.yaml", "runs/x", sets=sets, device="cpu",
                       resume="s3://detpipe/train/x")  # fmt: skip
    job = pytorchjob.JobConfig(name="train-x", image="i:1", nnodes=2, nproc_per_node=1, gpus_per_node=0)
    torchrun = launch.torchrun_command(cfg, launch.TorchrunOptions(nproc_per_node=2))
    rendered = {
        "torchrun": torchrun[torchrun.index(launch.WORKER_MODULE) + 1 :],
        "pytorchjob": pytorchjob.render(cfg, job)["spec"]["pytorchReplicaSpecs"]["Master"]["template"][
            "spec"
        ]["containers"][0]["args"],
        "trainjob": trainjob.render(cfg, job)["spec"]["trainer"]["args"],
    }
    for where, argv in rendered.items():
        assert not [a for a in argv if "\n" in a], where
        assert _set_items(argv) == [
            "copy_paste_mode=flip",
            "degrees=5.0",
            "freeze=[0, 2, 1]",
            "scale=0.5",
            'tracker="a: b\\nc"',  # a line break inside a value: a JSON string, still one line
        ], where
        back = config_from_args(get_args_parser().parse_args(argv))  # what the workers parse
        assert back.extra == cfg.extra == sets, where
        assert back.hyperparameters() == cfg.hyperparameters(), where
