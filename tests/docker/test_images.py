"""What the images install, checked without a Docker engine.

The serve image installs only ``[tool.detpipe.images] serve`` (pinned in pyproject.toml) and
then detpipe from the files its Dockerfile copies. Here that install is replayed: the COPY
sources go into a fresh build context, ``pip install --no-deps`` installs it into a target
directory, and a process that imports detpipe from there loads a model and builds the app
while we record which distributions its imported modules come from: every one must be in
the image's package list or their dependencies.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docker"))
from requirements import pinned_requirements  # noqa: E402


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; (]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: list[str]) -> set[str]:
    """The distributions ``names`` pull in (extras ignored), as installed here."""
    seen: set[str] = set()
    todo = [_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [_name(r) for r in reqs if "extra ==" not in r]
    return seen


IMAGE_LISTS = ("serve", "serve-gpu", "gpu")


def test_every_image_package_list_is_pinned():
    for image in IMAGE_LISTS:
        for requirement in pinned_requirements(image):
            assert re.fullmatch(r"[A-Za-z0-9_.-]+(\[[a-z,]+\])?===?[0-9][\w.+-]*", requirement), requirement


def test_requirements_script_refuses_an_unknown_image():
    res = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "requirements.py"), "tpu"], capture_output=True, text=True
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "requirements.py: error: no package list 'tpu' in [tool.detpipe.images] (have: serve, serve-gpu, gpu)"
    )


def test_gpu_runtimes_match_torchs_cuda_and_reach_the_images():
    """TensorRT's wheel is built for torch's CUDA major; the GPU images install the GPU lists, and the
    training image drops the CPU onnxruntime first (onnxruntime-gpu ships the same module)."""
    import torch

    gpu = {_name(r): r for r in pinned_requirements("gpu")}
    assert set(gpu) == {"tensorrt-cu13", "onnxruntime-gpu"}
    assert torch.version.cuda.split(".")[0] == "13" == _name(gpu["tensorrt-cu13"]).removeprefix("tensorrt-cu")
    assert gpu["onnxruntime-gpu"].startswith(
        "onnxruntime-gpu[cuda,cudnn]=="
    )  # CUDA 13 runtime + cuDNN wheels
    serve, serve_gpu = ({_name(r) for r in pinned_requirements(i)} for i in ("serve", "serve-gpu"))
    assert serve_gpu == (serve - {"onnxruntime"}) | {"onnxruntime-gpu", "tensorrt-cu13"}
    train = (ROOT / "docker" / "Dockerfile.train").read_text()
    steps = [
        "pip install --no-cache-dir .",
        "pip uninstall --yes onnxruntime",
        "python docker/requirements.py gpu",
        "CUDAExecutionProvider",
        "find_spec('tensorrt')",
    ]
    positions = [train.index(step) for step in steps]
    assert positions == sorted(positions)
    assert "python docker/requirements.py serve-gpu" in (ROOT / "docker" / "Dockerfile.serve-gpu").read_text()
    assert "docker/requirements.py" in _copy_sources(ROOT / "docker" / "Dockerfile.train")


def test_resolve_check_judges_declared_requirements():
    """docker/resolve_check.py's verdict on a pip report (the pip run itself needs PyPI: README)."""
    from resolve_check import judge

    pins = ["onnxruntime-gpu[cuda]==1.31.1"]
    declared = [
        "numpy<2",
        "protobuf>=4.25.8",
        'nvidia-cudnn-cu13~=9.0; extra == "cudnn"',
        "no-such-dist-here>=1",
    ]
    item = {"metadata": {"name": "onnxruntime-gpu", "version": "1.31.1", "requires_dist": declared}}
    conflicts, free = judge([item], pins)
    numpy = version("numpy")
    assert conflicts == [f"onnxruntime-gpu needs numpy<2, the project has numpy=={numpy}"]
    assert free == ["onnxruntime-gpu -> no-such-dist-here>=1"]  # the cudnn extra was not pinned: skipped


def test_every_package_directory_is_a_package():
    """A directory of modules without __init__.py is left out of a non-editable install."""
    found = set(find_packages(str(ROOT), include=["detpipe", "detpipe.*"]))
    for top, installed_as in (("detpipe", "detpipe"), ("serving", "detpipe.serving")):
        for init_dir in {p.parent for p in (ROOT / top).rglob("*.py")}:
            rel = init_dir.relative_to(ROOT / top)
            name = ".".join([installed_as, *rel.parts])
            assert (init_dir / "__init__.py").is_file(), f"{init_dir} has modules but no __init__.py"
            if top == "detpipe":
                assert name in found


def _copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += line.split()[1:-1]
    return sources


_PROBE = """
import json, os, sys
from importlib.metadata import distributions
import detpipe, detpipe.cli.main, detpipe.cli.serve, uvicorn
from detpipe.serving.app import create_app
from detpipe.serving.config import ServerConfig
from detpipe.serving.dataplane import DataPlane
from detpipe.serving.model import load_model
cfg = ServerConfig(model=sys.argv[1])
create_app(DataPlane(load_model(cfg), cfg))
owner = {}
for dist in distributions():
    name = dist.metadata["Name"].lower().replace("_", "-")
    for f in dist.files or ():
        owner[os.path.normpath(dist.locate_file(f))] = name
files = {os.path.normpath(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
print(json.dumps({"detpipe": detpipe.__file__, "dists": sorted({owner[f] for f in files if f in owner})}))
"""


@pytest.mark.slow
def test_serve_image_installs_from_its_copies_and_imports_only_its_packages(tmp_path, pico_onnx):
    context = tmp_path / "context"
    for source in _copy_sources(ROOT / "docker" / "Dockerfile.serve"):
        src, dst = ROOT / source, context / source
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    site = tmp_path / "site"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-compile", "--target", str(site), str(context)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    res = subprocess.run(
        [sys.executable, "-c", _PROBE, str(pico_onnx)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    probe = json.loads(res.stdout.splitlines()[-1])
    assert probe["detpipe"].startswith(str(site)), "detpipe must come from the image's install"
    allowed = _closure(pinned_requirements("serve")) | {"detpipe", "pip", "setuptools"}  # base image: pip
    allowed |= {"brotli", "zstandard"}  # urllib3 imports these when present (dev tools bring them), else not
    # pydantic imports email-validator when present; model-signing's sigstore pulls pydantic[email]
    allowed |= {"email-validator"}
    assert set(probe["dists"]) - allowed == set()
