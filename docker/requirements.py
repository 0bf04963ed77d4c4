"""Print the pinned requirements of one image's package list (pyproject.toml is the one place for pins).

    python docker/requirements.py serve > requirements-serve.txt

The lists live in ``[tool.detpipe.images]``; each name must be pinned in ``[project]
dependencies`` (or an optional-dependency group). Exit 2 with a one-line reason otherwise.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def pinned_requirements(image: str, pyproject: Path = PYPROJECT) -> list[str]:
    """The pinned requirement lines for ``image``'s package list, in list order.

    Raises:
        KeyError: no such image list, or a listed package without a pin.
    """
    project = tomllib.loads(pyproject.read_text())
    lists = project["tool"]["detpipe"]["images"]
    if image not in lists:
        raise KeyError(f"no package list {image!r} in [tool.detpipe.images] (have: {', '.join(lists)})")
    meta = project["project"]
    pins = {_name(r): r for r in meta["dependencies"]}
    for group in meta.get("optional-dependencies", {}).values():
        pins.update({_name(r): r for r in group})
    missing = [n for n in lists[image] if _name(n) not in pins]
    if missing:
        raise KeyError(f"{image}: not pinned in pyproject.toml: {', '.join(missing)}")
    return [pins[_name(n)] for n in lists[image]]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python docker/requirements.py IMAGE", file=sys.stderr)
        return 2
    try:
        print("\n".join(pinned_requirements(argv[0])))
    except KeyError as e:
        print(f"requirements.py: error: {e.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
