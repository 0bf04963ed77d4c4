"""The server's NMS defaults, import-free so that ``detpipe serve --help`` stays fast.

:data:`detpipe.serving.config.SERVE_NMS` (what the server runs) and the ``--conf``, ``--iou`` and
``--max-det`` flags of :mod:`detpipe.cli.serve` are both built from these.
"""

SERVE_CONF = 0.25
"""ultralytics' predict confidence threshold (validation's 0.001 is for mAP)."""
SERVE_IOU = 0.7
"""ultralytics' NMS IoU threshold (predict and validation alike)."""
SERVE_MAX_DET = 300
"""ultralytics' detections per image (predict and validation alike)."""
