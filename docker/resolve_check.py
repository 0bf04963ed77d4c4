"""Check that an image list's pins resolve with the project's own, without installing them.

    python docker/resolve_check.py gpu         # the training image's GPU runtimes
    python docker/resolve_check.py serve-gpu   # the GPU serving image

``pip install --dry-run --no-deps --report`` proves every pin exists for this Python and
platform (it fetches the pinned files' metadata, a few hundred MB for onnxruntime-gpu, and
neither TensorRT's nor CUDA's libraries). Every requirement those packages declare (with the
extras the pin asks for) is then checked against the version this project pins or this
environment has installed (torch's CUDA 13 wheels: nvidia-cudnn-cu13, cuda-toolkit ...).
Exit 0 when nothing conflicts, 1 listing the conflicts, 2 on a bad image name.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from requirements import pinned_requirements


def _project_pins(image_pins: list[str]) -> dict[str, str]:
    pins = {}
    for text in image_pins:
        req = Requirement(text)
        pins[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    return pins


def _pinned_version(name: str, pins: dict[str, str]) -> str | None:
    if name in pins:
        return pins[name]
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def check(image: str) -> tuple[list[str], list[str]]:
    """(conflicts, requirements left to pip) of ``image``'s pins (runs pip: needs the index)."""
    image_pins = pinned_requirements(image)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
               "--quiet", "--report", str(report), *image_pins]  # fmt: skip
        subprocess.run(cmd, check=True)
        installs = json.loads(report.read_text())["install"]
    return judge(installs, image_pins)


def judge(installs: list[dict], image_pins: list[str]) -> tuple[list[str], list[str]]:
    """(conflicts, requirements left to pip) of pip-report ``install`` items against the pins.

    A requirement counts when its marker holds for the extras its owner was pinned with.
    """
    extras = {canonicalize_name(Requirement(t).name): Requirement(t).extras for t in image_pins}
    pins = _project_pins(image_pins)
    conflicts, free = [], []
    for item in installs:
        meta = item["metadata"]
        owner = canonicalize_name(meta["name"])
        for text in meta.get("requires_dist") or []:
            req = Requirement(text)
            wanted = extras.get(owner) or {""}
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in wanted):
                continue
            have = _pinned_version(canonicalize_name(req.name), pins)
            if have is None:
                free.append(f"{owner} -> {req}")
            elif not req.specifier.contains(have, prereleases=True):
                conflicts.append(f"{owner} needs {req}, the project has {req.name}=={have}")
    return conflicts, free


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python docker/resolve_check.py IMAGE", file=sys.stderr)
        return 2
    try:
        conflicts, free = check(argv[0])
    except KeyError as e:
        print(f"resolve_check.py: error: {e.args[0]}", file=sys.stderr)
        return 2
    for line in free:
        print(f"pip chooses: {line}")
    for line in conflicts:
        print(f"CONFLICT: {line}")
    print(f"{argv[0]}: {'conflicts' if conflicts else 'resolves'} ({len(conflicts)} conflicts)")
    return 1 if conflicts else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
