"""Package layout only (metadata and pins live in pyproject.toml).

The Kubeflow layer (components/, pipelines/) and the inference server (serving/) live in
top-level folders (docs/ARCHITECTURE.md), kept apart from the library in detpipe/; they
install as detpipe.components, detpipe.pipelines and detpipe.serving so the CLI and the
images can import them.

Folders of data files the code reads at run time (no ``__init__.py``) are listed as packages
of their own in ``DATA``, with the files they ship, so that a wheel carries them and
setuptools does not warn "Package would be ignored" (tests/test_wheel_packaging.py builds one).
"""

from setuptools import find_packages, setup

# Top-level folders installed as subpackages of detpipe.
TOP_LEVEL = {
    "detpipe.components": "components",
    "detpipe.pipelines": "pipelines",
    "detpipe.serving": "serving",
}
# Data folders -> the files they ship: read through importlib.resources
# (detpipe/report/reproduction.py) or beside the module (detpipe/train/models.py CONFIGS_DIR).
DATA = {
    "detpipe.report.references": ["*.csv"],
    "detpipe.train.configs": ["*.yaml"],
}

setup(
    packages=[*find_packages(include=["detpipe", "detpipe.*"]), *TOP_LEVEL, *DATA],
    package_dir=TOP_LEVEL,
    package_data=DATA,
)
