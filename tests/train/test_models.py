"""Every architecture and scale resolves from the installed package with the network cut off."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from detpipe.errors import InvalidInput
from detpipe.train.models import (
    ARCHITECTURES,
    CONFIGS_DIR,
    builtin_names,
    resolve_model,
    shipped_configs,
    ultralytics_models_dir,
)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt or DNS lookup fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_all_families_and_scales(no_network: None) -> None:
    names = builtin_names()
    assert len(names) == 26
    assert {"yolov8n", "yolov8x", "yolov9t", "yolov9e", "yolov10b", "yolo11m", "yolo12n", "yolo12x"} <= set(
        names
    )
    root = ultralytics_models_dir()
    for name in names:
        for text in (name, f"{name}.yaml"):
            source = resolve_model(text)
            assert (source.kind, source.name, source.ultralytics_model) == ("config", name, f"{name}.yaml")
            assert source.config_file is not None and source.config_file.is_relative_to(root)
            declared = yaml.safe_load(source.config_file.read_text()).get("scales")
            assert declared is None or name[-1] in declared


def test_ultralytics_builds_each_family_offline(no_network: None) -> None:
    """ultralytics itself finds the configs locally and reads the scale from the name."""
    from ultralytics.nn.tasks import DetectionModel, guess_model_scale

    for arch in ARCHITECTURES.values():
        name = f"{arch.family}{arch.scales[0]}.yaml"
        model = DetectionModel(name, nc=3, verbose=False)
        assert model.yaml["yaml_file"] == name
        assert model.yaml.get("scale") == guess_model_scale(name)
        assert model.yaml["nc"] == 3 and model.model[-1].nc == 3
        if arch.family == "yolo12":  # scale n is width 0.25: the 64-channel stem becomes 16
            assert model.model[0].conv.out_channels == 16


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yolo12n.pt", "--model yolo12n.pt: no such file. detpipe never downloads weights from a hub"),
        ("yolo12q.yaml", "yolo12q.yaml: unknown scale 'q' for yolo12 (scales: n, s, m, l, x"),
        ("yolov9n", "yolov9n: unknown scale 'n' for yolov9 (scales: t, s, m, c, e"),
        ("yolo12", "yolo12: no scale given for yolo12"),
        ("rtdetr-l.yaml", "rtdetr-l.yaml: not a built-in YOLO config"),
        ("configs/missing.yaml", "--model configs/missing.yaml: no such file"),
        (
            "s3://bucket/model.yaml",
            "--model s3://bucket/model.yaml: a store URI must name a .pt weights file",
        ),
    ],
)
def test_refused(text: str, message: str, no_network: None) -> None:
    with pytest.raises(InvalidInput) as e:
        resolve_model(text)
    assert str(e.value).startswith(message)


def test_local_files_and_store_weights(tmp_path: Path, no_network: None) -> None:
    custom = tmp_path / "my-yolo12n.yaml"
    custom.write_text("nc: 3\n")
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"x")
    assert resolve_model(str(custom)).kind == "config" and resolve_model(str(custom)).name == "my-yolo12n"
    local = resolve_model(str(weights))
    assert (local.kind, local.remote, local.ultralytics_model) == ("weights", False, str(weights))
    remote = resolve_model("s3://detpipe/models/y/1/weights.pt")
    assert (remote.kind, remote.remote) == ("weights", True)


def test_shipped_configs_resolve_by_name(no_network: None) -> None:
    assert "yolov8-pico.yaml" in shipped_configs()
    for text in ("yolov8-pico.yaml", "yolov8-pico"):
        source = resolve_model(text)
        assert (source.kind, source.name) == ("config", "yolov8-pico")
        assert source.config_file == CONFIGS_DIR / "yolov8-pico.yaml"
        assert Path(source.ultralytics_model).is_file()  # a path: ultralytics does not look it up
    with pytest.raises(InvalidInput, match="not a built-in YOLO config"):
        resolve_model("yolov8-femto.yaml")
