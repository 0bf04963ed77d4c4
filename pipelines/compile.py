"""Compile pipelines to Kubeflow Pipelines IR YAML and check what was written.

paths = compile_pipelines(["train_to_edge", "small_data_sweep"], Path("runs/compiled"), settings)
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from detpipe.errors import DetpipeError
from detpipe.io import write_text
from detpipe.pipelines.settings import PipelineSettings

SECRET_MARKERS = ("MINIO_SECRET_KEY=", "AWS_SECRET_ACCESS_KEY=", "secretkey:")


def compile_pipeline(name: str, settings: PipelineSettings, out: Path) -> Path:
    """Compile ``name`` for ``settings`` into the YAML file ``out`` (atomically) and check it."""
    from kfp import compiler

    from detpipe.pipelines import build

    with tempfile.TemporaryDirectory() as tmp:
        tmp_file = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(build(name, settings), str(tmp_file))
        text = tmp_file.read_text()
    check_compiled(text, name)
    return write_text(out, text)


def compile_pipelines(names: Sequence[str], out_dir: Path, settings: PipelineSettings) -> list[Path]:
    """Compile several pipelines into ``out_dir/<name>.yaml``."""
    return [compile_pipeline(n, settings, Path(out_dir) / f"{n}.yaml") for n in names]


def load_compiled(text: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(pipeline spec, platform spec or None) of a compiled IR YAML."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    if not docs or "pipelineInfo" not in docs[0]:
        raise DetpipeError("not a compiled Kubeflow pipeline (no pipelineInfo)")
    return docs[0], (docs[1] if len(docs) > 1 else None)


def check_compiled(text: str, name: str) -> None:
    """Raise when a compiled pipeline is unusable: wrong name, no tasks, or a secret value in it."""
    spec, _ = load_compiled(text)
    expected = name.replace("_", "-")
    if spec["pipelineInfo"]["name"] != expected:
        raise DetpipeError(
            f"compiled pipeline is named {spec['pipelineInfo']['name']!r}, expected {expected!r}"
        )
    if not spec["root"]["dag"]["tasks"]:
        raise DetpipeError(f"compiled pipeline {name} has no tasks")
    leaked = [m for m in SECRET_MARKERS if m in text]
    if leaked:
        raise DetpipeError(f"compiled pipeline {name} contains a credential value ({leaked[0]}...)")
