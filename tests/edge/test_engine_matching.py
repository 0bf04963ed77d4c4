"""Engines matched to each device: one version with engines for several TensorRT versions and GPUs.

No TensorRT is needed: engine files are arbitrary bytes with real sidecars
(:func:`detpipe.export.sidecar.make_sidecar`), and the devices' TensorRT and GPU are given
through ``AgentConfig.device``. What is asserted is the target a device selects (the bytes in
its slot) and the ``incompatible`` outcome, never a TensorRT run: an engine of arbitrary bytes
fails its health check on every machine, which the tests assert too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edge_support import Models

from detpipe.edge.agent import Agent, AgentConfig
from detpipe.edge.engine import pick_target
from detpipe.edge.keys import keygen
from detpipe.edge.publish import Artifact, PublishConfig, publish_version, rollback_to, set_rollout
from detpipe.edge.slots import Slots
from detpipe.edge.targets import Release, engine_variant, target_path
from detpipe.errors import InvalidInput
from detpipe.export.sidecar import DeviceInfo, make_sidecar, sidecar_path, write_sidecar
from detpipe.export.tensorrt_build import engine_unavailable_reason
from detpipe.io import sha256_file
from detpipe.store import LocalStore

NO_TRT = engine_unavailable_reason() is not None
ORIN_JP6 = DeviceInfo("Orin", "8.7", "10.3.0", dla_cores=2)
XAVIER = DeviceInfo("Xavier", "7.2", "8.6.2", dla_cores=2)
ORIN_NEWER = DeviceInfo("Orin", "8.7", "10.4.0", dla_cores=2)
CLASS = "orin"


def engine(d: Path, device: DeviceInfo, precision: str = "fp16", **flags) -> Path:
    """An engine file of arbitrary bytes with the sidecar a build on ``device`` would write."""
    name = f"{device.tensorrt_version}-{device.compute_capability}-{precision}-{flags.get('dla_core')}"
    path = d / name / f"model.{precision}.engine"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"not a real engine: {name} {flags}".encode() * 64)
    write_sidecar(path, make_sidecar(path, device, precision, [1, 3, 64, 64], flags))
    return path


def release(version: str, file: Path, fmt: str = "engine") -> Release:
    """A target as the agent reads it from verified metadata."""
    sidecar = json.loads(sidecar_path(file).read_text()) if fmt == "engine" else None
    variant = engine_variant(sidecar) if sidecar else None
    return Release(target_path(CLASS, version, fmt, variant), version, CLASS, fmt, sha256_file(file),
                   file.stat().st_size, sidecar=sidecar)  # fmt: skip


def publish(store, keys: Path, version: str, *files: Path, onnx: Path | None = None, **kw) -> list[Release]:
    arts = [Artifact(f, "engine") for f in files] + ([Artifact(onnx, "onnx")] if onnx else [])
    first = arts[0]
    cfg = PublishConfig(CLASS, version, first.path, first.fmt, keys, extra=tuple(arts[1:]), **kw)
    return publish_version(store, cfg)


def device(store, keys: Path, d: Path, info: DeviceInfo | None, device_id: str) -> Agent:
    return Agent(AgentConfig(str(store.root), CLASS, device_id, keys / "root.json", d, device=info))


def slot_target(d: Path) -> tuple[str, bytes]:
    """The target path the device installed into a slot last, and the bytes it holds."""
    slots = Slots(d)
    manifests = [m for m in (slots.manifest("a"), slots.manifest("b")) if m]
    newest = max(manifests, key=lambda m: m["installed_at"])
    slot = next(s for s in ("a", "b") if slots.manifest(s) == newest)
    return newest["target"], (slots.slots / slot / newest["file"]).read_bytes()


def test_pick_target_across_tensorrt_versions_and_gpus(tmp_path: Path, models: Models):
    a, b = engine(tmp_path, ORIN_JP6), engine(tmp_path, XAVIER)
    dla = engine(tmp_path, ORIN_JP6, dla_core=0)
    int8 = engine(tmp_path, ORIN_JP6, "int8")
    engines = [release("1", f) for f in (a, b)]
    onnx = release("1", models.good, "onnx")
    assert pick_target(engines, ORIN_JP6).release == engines[0]
    assert pick_target(engines, XAVIER).release == engines[1]
    assert pick_target(engines, ORIN_JP6).reason == (
        f"engine {CLASS}/1/engines/trt10.3.0-sm87-fp16/model.engine for TensorRT 10.3.0 sm87"
    )
    none = pick_target(engines, ORIN_NEWER)
    assert none.release is None
    assert (
        none.reason
        == "no engine for TensorRT 10.4.0 sm87 among 10.3.0/sm87, 8.6.2/sm72; no ONNX to build from"
    )
    fallback = pick_target([*engines, onnx], ORIN_NEWER)
    assert fallback.release == onnx and fallback.reason.endswith(": building from the ONNX")
    # same TensorRT, another patch release: not portable (sidecar.check_compatible's rule)
    assert pick_target(engines, DeviceInfo("Orin", "8.7", "10.3.1")).release is None
    # same TensorRT and compute capability, another GPU: named with the reason
    other_gpu = pick_target(engines, DeviceInfo("Thor", "8.7", "10.3.0"))
    assert (
        other_gpu.release is None
        and "10.3.0/sm87 (GPU 'Thor' here, engine built on 'Orin')" in other_gpu.reason
    )
    # several that fit: GPU before DLA, fp16 before int8; a DLA engine needs the DLA core
    fits = [release("1", f) for f in (dla, int8, a)]
    assert pick_target(fits, ORIN_JP6).release == fits[2]
    assert pick_target(fits[:2], ORIN_JP6).release == fits[1]
    assert pick_target(fits[:1], ORIN_JP6).release == fits[0]
    no_dla = pick_target(fits[:1], DeviceInfo("Orin", "8.7", "10.3.0", dla_cores=0))
    assert no_dla.release is None and "DLA core 0, this device has 0" in no_dla.reason
    # built version-compatible with 10.3.0: runs on 10.4.0, but an exact build comes first
    vc = release("1", engine(tmp_path / "vc", ORIN_JP6, version_compatible=True))
    assert pick_target([vc], ORIN_NEWER).release == vc
    exact = release("1", engine(tmp_path, ORIN_NEWER))
    assert pick_target([vc, exact], ORIN_NEWER).release == exact
    # no TensorRT on the device: the ONNX on the CPU, else nothing
    cpu = pick_target([*engines, onnx], None, "TensorRT is not installed here")
    assert cpu.release == onnx and cpu.reason.endswith("the ONNX model is served on the CPU")
    assert pick_target(engines, None, "TensorRT is not installed here").release is None
    assert pick_target([onnx], ORIN_JP6).release == onnx  # ONNX-only versions as before


def test_each_device_takes_its_engine_or_is_incompatible_until_one_is_published(tmp_path: Path, keys: Path):
    store = LocalStore(tmp_path / "store")
    e103, e862 = engine(tmp_path, ORIN_JP6), engine(tmp_path, XAVIER)
    published = publish(store, keys, "1", e103, e862)
    assert [r.path for r in published] == [
        f"{CLASS}/1/engines/trt10.3.0-sm87-fp16/model.engine",
        f"{CLASS}/1/engines/trt8.6.2-sm72-fp16/model.engine",
    ]
    for info, file, dev in ((ORIN_JP6, e103, "jetson-jp6"), (XAVIER, e862, "xavier-jp5")):
        d = tmp_path / dev
        r = device(store, keys, d, info, dev).run_once()
        target, data = slot_target(d)
        assert target == published[0 if file == e103 else 1].path and data == file.read_bytes(), dev
        # arbitrary bytes: the health check cannot load them, here or on a Jetson
        assert (r["outcome"], r["version"]) == ("rolled-back", "1") and "model.engine" in r["error"], r

    d = tmp_path / "jetson-newer"
    newer = device(store, keys, d, ORIN_NEWER, "jetson-newer")
    why = "no engine for TensorRT 10.4.0 sm87 among 10.3.0/sm87, 8.6.2/sm72; no ONNX to build from"
    for _ in range(2):  # every cycle: nothing downloaded, nothing refused
        r = newer.run_once()
        assert (r["outcome"], r["version"], r["error"]) == ("incompatible", "1", why), r
        assert not (d / "downloads").exists() or not list((d / "downloads").iterdir())
        assert not Slots(d).state().get("refused") and not (d / "current").exists()
    status = json.loads(store.get_bytes("devices/jetson-newer/status.json"))
    assert (status["outcome"], status["last_error"]) == ("incompatible", why)

    e104 = engine(tmp_path, ORIN_NEWER)
    added = publish(store, keys, "1", e104)  # the same version, one engine more
    assert added[0].path == f"{CLASS}/1/engines/trt10.4.0-sm87-fp16/model.engine"
    r = newer.run_once()
    assert slot_target(d) == (added[0].path, e104.read_bytes())
    assert (r["outcome"], r["version"]) == ("rolled-back", "1"), r  # selected, downloaded, health-checked
    assert list(Slots(d).state()["refused"]) == [sha256_file(e104)]  # a fault of this artifact only


@pytest.mark.skipif(
    not NO_TRT, reason="TensorRT is installed here: the CPU fallback needs a device without it"
)
def test_the_onnx_fallback_installs_and_is_served_on_the_cpu(tmp_path: Path, keys: Path, models: Models):
    store = LocalStore(tmp_path / "store")
    e103, e862 = engine(tmp_path, ORIN_JP6), engine(tmp_path, XAVIER)
    publish(store, keys, "1", e103, e862)
    newer = device(store, keys, tmp_path / "newer", ORIN_NEWER, "jetson-newer")
    assert newer.run_once()["outcome"] == "incompatible"
    publish(store, keys, "2", e103, e862, onnx=models.good)  # the next version carries the ONNX
    r = newer.run_once()
    assert (r["outcome"], r["version"]) == ("installed", "2"), r
    m = json.loads((tmp_path / "newer" / "current" / "manifest.json").read_text())
    assert (m["target"], m["file"], m.get("engine")) == (f"{CLASS}/2/model.onnx", "model.onnx", None)

    # no TensorRT at all (detected: this machine has none): engines + ONNX -> the ONNX on the CPU
    cpu = device(store, keys, tmp_path / "cpu", None, "cpu-box")
    r = cpu.run_once()
    assert (r["outcome"], r["version"]) == ("installed", "2"), r
    assert (tmp_path / "cpu" / "current" / "model.onnx").read_bytes() == models.good.read_bytes()
    only_engines = LocalStore(tmp_path / "engines-only")
    publish(only_engines, keys, "1", e103, e862)
    r = device(only_engines, keys, tmp_path / "cpu2", None, "cpu-box").run_once()
    assert r["outcome"] == "incompatible" and r["error"].startswith("TensorRT is not installed here"), r
    assert r["error"].endswith(
        "none of the engines 10.3.0/sm87, 8.6.2/sm72 can run; no ONNX to serve on the CPU"
    )


def test_one_version_one_rollout_across_its_engines(tmp_path: Path):
    keys = tmp_path / "keys"
    keygen(keys)
    store = LocalStore(tmp_path / "store")
    e103, e862, e104 = engine(tmp_path, ORIN_JP6), engine(tmp_path, XAVIER), engine(tmp_path, ORIN_NEWER)
    publish(store, keys, "1", e103)
    publish(store, keys, "2", e103, e862, rollout_pct=10, groups=("canary",))
    set_rollout(store, keys, CLASS, "2", 50)
    added = publish(store, keys, "2", e104)  # no --rollout: the version's
    assert (added[0].rollout_pct, added[0].groups) == (50, ("canary",))
    publish(store, keys, "2", e104, rollout_pct=70)  # the same bytes again: a rollout change for all
    custom = _customs(store, "2")
    assert {c["rollout_pct"] for c in custom.values()} == {70} and len(custom) == 3
    with pytest.raises(InvalidInput, match="published already with other content"):
        publish(store, keys, "2", engine(tmp_path / "rebuilt", ORIN_NEWER, workspace="x"))
    rollback_to(store, keys, CLASS, "1")
    assert not _customs(store, "2")
    assert [c["rollback"] for c in _customs(store, "1").values()] == [True]


def _customs(store: LocalStore, version: str) -> dict[str, dict]:
    from tuf.api.metadata import Metadata, Targets

    targets = Metadata[Targets].from_bytes(store.get_bytes("ota/metadata/targets.json")).signed
    return {p: t.custom for p, t in targets.targets.items() if t.custom["version"] == version}


def test_cli_publishes_several_engines_and_refuses_bad_ones(
    tmp_path: Path, keys: Path, models: Models, capsys: pytest.CaptureFixture
):
    from test_publish import main_in_process

    from detpipe.cli.main import main

    store = tmp_path / "store"
    e103, e862 = engine(tmp_path, ORIN_JP6), engine(tmp_path, XAVIER)
    base = ["edge", "publish", "--store", str(store), "--device-class", CLASS, "--keys", str(keys)]
    capsys.readouterr()
    assert main([*base, "--version", "1", "--engine", str(e103), "--engine", str(e862),
                 "--onnx", str(models.good), "--rollout", "20"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert (printed["version"], printed["rollout_pct"]) == ("1", 20)
    assert [(t["target"], t["format"]) for t in printed["targets"]] == [
        (f"{CLASS}/1/engines/trt10.3.0-sm87-fp16/model.engine", "engine"),
        (f"{CLASS}/1/engines/trt8.6.2-sm72-fp16/model.engine", "engine"),
        (f"{CLASS}/1/model.onnx", "onnx"),
    ]
    listed = LocalStore(store).list("ota/targets/")
    assert sorted(k.rsplit("/", 1)[0] for k in listed) == [
        f"ota/targets/{CLASS}/1",
        f"ota/targets/{CLASS}/1/engines/trt10.3.0-sm87-fp16",
        f"ota/targets/{CLASS}/1/engines/trt8.6.2-sm72-fp16",
    ]
    lonely = tmp_path / "lonely.engine"
    lonely.write_bytes(b"no sidecar")
    twin = engine(tmp_path / "twin", ORIN_JP6, workspace="twin")
    bad = engine(tmp_path / "bad", ORIN_JP6)
    side = json.loads(sidecar_path(bad).read_text())
    sidecar_path(bad).write_text(json.dumps({**side, "tensorrt_version": "../../10.3.0"}))
    wrong_sidecar = engine(tmp_path / "wrong", XAVIER, workspace="other bytes")
    sidecar_path(wrong_sidecar).write_text(sidecar_path(e862).read_text())
    cases = {
        ("--engine", str(lonely)): "no sidecar lonely.engine.json beside it",
        ("--engine", str(e103), "--engine", str(twin)): "two engines for trt10.3.0-sm87-fp16 in version 2",
        ("--engine", str(bad)): "tensorrt_version '../../10.3.0' (expected e.g. 10.3.0)",
        ("--engine", str(wrong_sidecar)): "its sha256 is not its sidecar's",
        (
            "--onnx",
            str(models.good),
            "--release",
            str(tmp_path),
        ): "give --engine/--onnx or --release, not both",
    }
    for extra, message in cases.items():
        code, err = main_in_process(capsys, *base, "--version", "2", *extra)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (extra, err)
    code, err = main_in_process(capsys, *base, "--rollback-to", "1", "--engine", str(e103))
    assert code == 2 and "--rollback-to re-signs a published version" in err, err
    assert not [k for k in LocalStore(store).list("ota/targets/") if f"/{CLASS}/2/" in k]  # nothing uploaded


def test_agent_cli_once_exits_3_when_no_target_fits(tmp_path: Path):
    """``edge agent --once`` on this machine (no TensorRT, or another one) for an engine-only
    version built for another GPU: outcome incompatible, exit 3 (not 1: nothing failed)."""
    import os
    import subprocess
    import sys

    keys = tmp_path / "keys"
    keygen(keys)
    store = LocalStore(tmp_path / "store")
    publish(store, keys, "1", engine(tmp_path, DeviceInfo("Thor", "11.0", "99.1.0")))
    done = subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "edge", "agent", "--store", str(store.root),
         "--device-class", CLASS, "--device-id", "cam-1", "--trust", str(keys / "root.json"),
         "--dir", str(tmp_path / "dev"), "--once"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert json.loads(done.stdout)["outcome"] == "incompatible"
