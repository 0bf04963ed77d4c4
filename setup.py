"""Package layout only (metadata and pins live in pyproject.toml).

The Kubeflow layer lives in the top-level folders components/ and pipelines/ (DESIGN.md),
kept apart from the kfp-free library in detpipe/; they install as detpipe.components and
detpipe.pipelines so the CLI and the images can import them.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["detpipe", "detpipe.*"]), "detpipe.components", "detpipe.pipelines"],
    package_dir={"detpipe.components": "components", "detpipe.pipelines": "pipelines"},
)
