"""Shared fixtures: a moto S3 server, a tiny synthetic dataset and a small YOLOv8 trained on it.

The trained model (``yolov8-pico.yaml``, 64 px, 40 epochs, about a minute of CPU) reaches
roughly 0.27 mAP50-95 on the val split: enough for accuracy deltas to mean something.
Training runs in a subprocess (ultralytics changes process-wide state) and its weights are
kept in pytest's cache, keyed by everything that determines them, so reruns skip it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from filelock import FileLock
from serve_client import Server, start_serve
from store_servers import MotoServer, S3Server, s3_env

from detpipe.train.models import CONFIGS_DIR

HERE = Path(__file__).resolve().parent
PICO_YAML = CONFIGS_DIR / "yolov8-pico.yaml"
SYNTH = {"images": 128, "val_images": 32, "classes": 2, "imgsz": 64, "seed": 0}
TRAIN = {"epochs": 40, "imgsz": 64, "batch": 16, "seed": 0}
_XDIST = "PYTEST_XDIST_WORKER" in os.environ  # one of several pytest-xdist workers (make test runs 2)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """``python -m moto.server`` on a free loopback port, with the bucket ``detpipe-test``."""
    from detpipe.store import S3Config, open_store

    server = MotoServer()
    try:
        env = s3_env(server.endpoint)
        open_store("s3://detpipe-test", s3=S3Config.from_env(env), create_bucket=True)
        yield S3Server(server.endpoint, env)
    finally:
        server.kill()


@dataclass(frozen=True)
class SmallData:
    root: Path  # detpipe data synth output
    yolo: Path  # detpipe data yolo output (dataset.yaml, train2017.txt, ...)

    @property
    def val_annotations(self) -> Path:
        return self.root / "annotations" / "instances_val2017.json"

    @property
    def val_images(self) -> Path:
        return self.root / "images" / "val2017"

    @property
    def train_list(self) -> Path:
        return self.yolo / "train2017.txt"


def _make_data(root: Path) -> SmallData:
    from detpipe.data.layout import yolo_dataset
    from detpipe.data.synth import SynthConfig, synthesize

    synthesize(SynthConfig(out=root / "synth", **SYNTH))
    yolo_dataset(root / "synth", root / "yolo")
    return SmallData(root / "synth", root / "yolo")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> SmallData:
    """Synthetic COCO data (128 train / 32 val images, 2 classes, 64 px) and its YOLO layout."""
    return _make_data(tmp_path_factory.mktemp("small-data"))


_TRAIN_SCRIPT = """
import sys
from pathlib import Path
from detpipe.ultralytics_env import configure_offline
out = Path(sys.argv[1])
configure_offline(out / "ultralytics")
from ultralytics import YOLO
YOLO(sys.argv[2]).train(
    data=sys.argv[3], epochs={epochs}, imgsz={imgsz}, batch={batch}, seed={seed}, deterministic=True,
    device="cpu", workers=0, project=str(out), name="train", exist_ok=True, plots=False, amp=False,
    val=False, verbose=False,
)
"""


def _cache_dir(request: pytest.FixtureRequest, factory: pytest.TempPathFactory, name: str, key: dict) -> Path:
    import detpipe.data

    blob = json.dumps({**key, "name": name, "ultralytics": version("ultralytics"), "torch": version("torch")})
    h = hashlib.sha256(blob.encode() + PICO_YAML.read_bytes())
    for source in ("synth.py", "shapes.py", "yolo.py"):  # the training data's generators
        h.update((Path(detpipe.data.__file__).parent / source).read_bytes())
    digest = h.hexdigest()[:12]
    try:
        return Path(request.config.cache.mkdir(f"detpipe-export-{name}-{digest}"))
    except AttributeError:  # cache plugin disabled (-p no:cacheprovider): this run's xdist workers share it
        if not _XDIST:
            return factory.mktemp(f"{name}-{digest}")
        out = factory.getbasetemp().parent / f"{name}-{digest}"
        out.mkdir(exist_ok=True)
        return out


@pytest.fixture(scope="session")
def trained_pico(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, small_data: SmallData
) -> Path:
    """Weights of the pico YOLOv8 trained on ``small_data`` (cached across runs)."""
    out = _cache_dir(request, tmp_path_factory, "pico", {**SYNTH, **TRAIN})
    weights = out / "train" / "weights" / "last.pt"
    with FileLock(f"{out}.lock"):  # xdist workers share the cache: one trains, the others wait
        if weights.is_file():
            return weights
        res = subprocess.run(
            [
                sys.executable,
                "-c",
                _TRAIN_SCRIPT.format(**TRAIN),
                str(out),
                str(PICO_YAML),
                str(small_data.yolo / "dataset.yaml"),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert res.returncode == 0 and weights.is_file(), res.stderr[-3000:]
    return weights


@pytest.fixture(scope="session")
def release_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A release signing key pair: ``release.key`` (0600) and ``release.pub``."""
    from detpipe.signing import keygen

    return keygen(tmp_path_factory.mktemp("release-keys"))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start real ``detpipe serve ARGS`` processes on free loopback ports; stopped at teardown.

    Ready (``/readyz`` 200) when returned, unless ``wait=False`` (then ``server.wait_ready()``:
    several servers start in parallel).
    """
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None, wait: bool = True) -> Server:
        server = start_serve(args, tmp_path, env)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def val_jpegs(small_data: SmallData) -> list[bytes]:
    """The first 8 val images as JPEG bytes, as a client would send them."""
    return [p.read_bytes() for p in sorted(small_data.val_images.glob("*.jpg"))[:8]]


@pytest.fixture(scope="session")
def val_images_bgr(small_data: SmallData) -> list:
    """The first 8 val images, BGR uint8."""
    from detpipe.export.calib import read_image

    return [read_image(p) for p in sorted(small_data.val_images.glob("*.jpg"))[:8]]


@pytest.fixture(scope="session")
def pico_onnx(trained_pico: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained pico model as a dynamic-batch ONNX file (64 px, 2 classes)."""
    from detpipe.export.model import load_detection_model
    from detpipe.export.onnx_export import OnnxExportConfig, export_onnx

    out = tmp_path_factory.mktemp("serve-model") / "model.onnx"
    cfg = OnnxExportConfig(imgsz=(64, 64), dynamic_batch=True)
    return export_onnx(load_detection_model(trained_pico), out, cfg).path


_SUMMARY_LINES: list[str] = []
_SUMMARY = "detpipe_summary"  # the user property a test's summary lines travel in (from xdist workers too)


@pytest.fixture
def summary_line(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture) -> Iterator:
    """``summary_line(text)``: print ``text`` now and again in the session's closing summary."""

    def add(text: str) -> None:
        request.node.user_properties.append((_SUMMARY, text))
        with capsys.disabled():
            print(f"\n{text}")

    yield add


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collects the summary lines of each finished test (in the controller when xdist runs)."""
    if report.when == "teardown":
        _SUMMARY_LINES.extend(text for key, text in report.user_properties if key == _SUMMARY)


def pytest_terminal_summary(terminalreporter) -> None:
    """Lines the fault/load tests asked for (counts per fault class), after the test results."""
    if _SUMMARY_LINES:
        terminalreporter.section("fault and load summaries")
        for line in _SUMMARY_LINES:
            terminalreporter.write_line(line)
