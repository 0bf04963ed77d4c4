"""detpipe: YOLO detectors from a COCO-format dataset to an engine on a Jetson.

Every stage is a plain typed function in this package with a CLI subcommand on top
(``detpipe --help``); Kubeflow components, the pipelines and the server call the same
functions.
"""

__version__ = "0.1.0"
