"""Kubeflow Pipelines v2 components: one per stage, thin typed wrappers over detpipe.

Each component body only imports detpipe, calls one stage function and logs metrics
(``Metrics.log_metric``, ``artifact.metadata``) so the KFP UI shows them. Their images are
named in :mod:`detpipe.components.images`; the pipelines in :mod:`detpipe.pipelines` wire
them together. Installed as ``detpipe.components`` (see setup.py).
"""
