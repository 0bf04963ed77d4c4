"""Package layout only (metadata and pins live in pyproject.toml).

The Kubeflow layer (components/, pipelines/) and the inference server (serving/) live in
top-level folders (DESIGN.md), kept apart from the library in detpipe/; they install as
detpipe.components, detpipe.pipelines and detpipe.serving so the CLI and the images can
import them.
"""

from setuptools import find_packages, setup

# Top-level folders installed as subpackages of detpipe.
TOP_LEVEL = {
    "detpipe.components": "components",
    "detpipe.pipelines": "pipelines",
    "detpipe.serving": "serving",
}

setup(
    packages=[*find_packages(include=["detpipe", "detpipe.*"]), *TOP_LEVEL],
    package_dir=TOP_LEVEL,
    # Data files read at run time through importlib.resources.
    package_data={"detpipe.report": ["references/*.csv"], "detpipe.train": ["configs/*.yaml"]},
)
