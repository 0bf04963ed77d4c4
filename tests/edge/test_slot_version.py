"""What version ``detpipe serve`` reports for a model file: the OTA version of an edge slot, else its hash."""

from __future__ import annotations

import json
from pathlib import Path

from detpipe.edge.slots import installed_version
from detpipe.io import sha256_file
from detpipe.serving.model import _file_version


def _slot(tmp_path: Path, **manifest: object) -> Path:
    slot = tmp_path / "slots" / "a"
    slot.mkdir(parents=True)
    model = slot / "model.onnx"
    model.write_bytes(b"onnx bytes")
    doc = {"version": "2", "sha256": sha256_file(model), "file": "model.onnx", **manifest}
    (slot / "manifest.json").write_text(json.dumps(doc))
    return model


def test_a_slot_model_reports_its_ota_version(tmp_path: Path) -> None:
    model = _slot(tmp_path)
    assert installed_version(model, sha256_file(model)) == "2"
    assert _file_version(model, sha256_file(model)) == "2"


def test_another_file_or_hash_reports_the_hash(tmp_path: Path) -> None:
    model = _slot(tmp_path)
    model.write_bytes(b"replaced after install")  # not the file the slot's manifest pins
    digest = sha256_file(model)
    assert installed_version(model, digest) is None
    assert _file_version(model, digest) == f"sha-{digest[:12]}"
    loose = tmp_path / "loose.onnx"
    loose.write_bytes(b"x")
    assert _file_version(loose, sha256_file(loose)).startswith("sha-")


def test_a_hostile_slot_version_never_becomes_a_label(tmp_path: Path) -> None:
    model = _slot(tmp_path, version="2\r\nSet-Cookie: x")
    assert _file_version(model, sha256_file(model)) == f"sha-{sha256_file(model)[:12]}"
