"""The wheel carries every subpackage and the data files the code reads, and installs non-editable.

The source tree is copied first (pip builds in-tree: build/ and *.egg-info stay out of the
checkout), then built with ``pip wheel --no-build-isolation --no-index`` (the setuptools in this
environment, nothing downloaded) and installed with ``pip install --target`` into a folder that
an interpreter then imports detpipe from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILES = ("setup.py", "pyproject.toml", "README.md")
TOP_LEVEL = {
    "components": "detpipe/components",
    "pipelines": "detpipe/pipelines",
    "serving": "detpipe/serving",
}
"""Top-level folders -> where setup.py installs them."""
WARNINGS = ("Package would be ignored", "is absent from the `packages`", "is not listed as a package")


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _source(dst: Path) -> dict[str, Path]:
    """Copy what the build reads to ``dst``; returns wheel path -> source file of every file."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in FILES:
        shutil.copy2(REPO / name, dst / name)
    shipped: dict[str, Path] = {}
    for folder, target in {"detpipe": "detpipe", **TOP_LEVEL}.items():
        shutil.copytree(REPO / folder, dst / folder, ignore=ignore)
        for path in sorted((dst / folder).rglob("*")):
            if path.is_file() and (path.suffix == ".py" or (folder == "detpipe" and path.suffix != ".md")):
                shipped[f"{target}/{path.relative_to(dst / folder).as_posix()}"] = path
    return shipped


def test_the_wheel_ships_every_subpackage_and_data_file(tmp_path):
    src, dist, target = tmp_path / "src", tmp_path / "dist", tmp_path / "site"
    src.mkdir()
    shipped = _source(src)
    build = _pip(
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-v",
        "-w",
        str(dist),
        ".",
        cwd=src,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    log = build.stdout + build.stderr
    assert [w for w in WARNINGS if w in log] == [], log[-3000:]

    (wheel,) = dist.glob("detpipe-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(set(shipped) - names) == []  # every module and data file
    packages = {p.rsplit("/", 1)[0] for p in shipped if p.endswith("/__init__.py")}
    assert {"detpipe/train", "detpipe/logs", *TOP_LEVEL.values()} <= packages
    assert {"detpipe/train/configs/yolov8-pico.yaml", "detpipe/report/references/yolo12_coco.csv"} <= names

    install = _pip(
        "install",
        "--no-deps",
        "--no-index",
        "--no-compile",
        "--target",
        str(target),
        str(wheel),
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    check = (
        "import importlib.util, sys, detpipe\n"
        "from pathlib import Path\n"
        "from detpipe.train.models import resolve_model\n"
        "from detpipe.report.reproduction import YOLO12_COCO, load_reference\n"
        "root = Path(sys.argv[1]).resolve()\n"
        "assert Path(detpipe.__file__).resolve().is_relative_to(root), detpipe.__file__\n"
        "pico = resolve_model('yolov8-pico.yaml').config_file\n"
        "assert pico.is_file() and pico.resolve().is_relative_to(root), pico\n"
        "assert YOLO12_COCO.resolve().is_relative_to(root) and len(load_reference(YOLO12_COCO)) == 5\n"
        "for name in ('detpipe.components', 'detpipe.pipelines', 'detpipe.serving'):\n"
        "    assert Path(importlib.util.find_spec(name).origin).resolve().is_relative_to(root), name\n"
        "print('ok', pico.name, YOLO12_COCO.name)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run(
        [sys.executable, "-c", check, str(target)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok yolov8-pico.yaml yolo12_coco.csv"
