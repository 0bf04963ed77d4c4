"""The library never depends on its command line: no module under detpipe/ outside
detpipe/cli, nor components/, pipelines/ or serving/ (installed as detpipe.components ...,
setup.py), imports detpipe.cli. Found by walking every module's AST, relative imports too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from detpipe.errors import InvalidInput
from detpipe.overrides import parse_set

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "detpipe"
# Folder -> the package it installs as (setup.py's TOP_LEVEL, plus the library itself).
PACKAGES = {
    "detpipe": "detpipe",
    "components": "detpipe.components",
    "pipelines": "detpipe.pipelines",
    "serving": "detpipe.serving",
}


def _module_name(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [PACKAGES[folder], *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (``from . import x`` resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def _library_modules() -> list[Path]:
    paths = [p for folder in PACKAGES for p in (ROOT / folder).rglob("*.py")]
    return sorted(p for p in paths if p.relative_to(ROOT).parts[:2] != ("detpipe", "cli"))


def test_the_walk_sees_imports() -> None:
    """The checker itself: it finds the CLI's own imports (so an empty result means something)."""
    found = _imported_modules(PACKAGE / "cli" / "pipeline.py")
    assert "detpipe.cli.options" in found or "detpipe.overrides" in found
    assert "detpipe.errors" in found
    assert len(_library_modules()) > 50


def test_no_library_module_imports_the_cli() -> None:
    offenders = {
        _module_name(path): sorted(
            m for m in _imported_modules(path) if m == "detpipe.cli" or m.startswith("detpipe.cli.")
        )
        for path in _library_modules()
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_parse_set() -> None:
    assert parse_set(["scale=0.9", "formats=[onnx]", "resume="]) == {
        "scale": 0.9,
        "formats": ["onnx"],
        "resume": None,
    }
    with pytest.raises(InvalidInput, match="expected KEY=VALUE"):
        parse_set(["scale"])
    with pytest.raises(InvalidInput, match="not valid YAML"):
        parse_set(["x=[1"])
