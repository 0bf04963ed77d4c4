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
