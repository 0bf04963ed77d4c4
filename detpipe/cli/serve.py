"""``detpipe serve``: the FastAPI inference server (uvicorn) for one exported model or release."""

from __future__ import annotations

import argparse
import logging
import textwrap
from pathlib import Path

from detpipe.cli.options import non_negative_float, port_number, positive_int, unit_float
from detpipe.serving.config import SERVE_NMS

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP (detection API, health, Prometheus metrics)",
        description=textwrap.fill(
            "Serve one YOLO model over HTTP with uvicorn. MODEL is a .onnx/.engine file or a "
            "release: s3://BUCKET/models/NAME/VERSION (MinIO settings from DETPIPE_S3_* / a mounted "
            "Secret), a local release directory, or .../models/NAME for the newest version; releases are "
            "downloaded into --cache-dir and checked against their manifest before anything is loaded. "
            "Concurrent requests are batched dynamically (--max-batch, --max-delay-ms); over --max-queue "
            "admitted images new requests get 503 with Retry-After. Routes: POST "
            "/v1/models/NAME:predict (JSON, base64 images), POST /v1/models/NAME:detect (raw image body), "
            "GET /v1/models/NAME, /healthz, /readyz, /metrics (Prometheus), /docs. The model is loaded "
            "before the port opens: a bad MODEL exits 2 without serving.",
            width=88,
        ),
        epilog="examples:\n"
        "  detpipe serve --model runs/local/store/models/yolov8n-synth --port 8080\n"
        "  curl --data-binary @bus.jpg -H 'Content-Type: image/jpeg' \\\n"
        "      localhost:8080/v1/models/yolov8n-synth:detect\n"
        "  detpipe serve --model s3://detpipe/models/yolov8n-coco/3 --format onnx-int8 --host 0.0.0.0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="model file or release URI (see above)")
    p.add_argument("--name", default=None, help="model name in routes and metrics (default: release name)")
    p.add_argument(
        "--format",
        default="onnx",
        choices=("onnx", "onnx-int8", "engine"),
        help="which file of a release to serve (default: onnx)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        help="auto, onnxruntime, onnxruntime-cuda, onnxruntime-trt or tensorrt (default: auto)",
    )
    p.add_argument(
        "--device-class", default=None, help="engines/<device-class>/ of a release (default: this GPU)"
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1; 0.0.0.0 in a pod)")
    p.add_argument("--port", type=port_number, default=8080, help="port (default: 8080)")
    p.add_argument("--max-batch", type=positive_int, default=8, help="images per model call (default: 8)")
    p.add_argument(
        "--max-delay-ms",
        type=non_negative_float,
        default=0.0,
        help="how long a batch waits to fill (default: 0 = batch what queued while the model ran)",
    )
    p.add_argument(
        "--max-queue", type=positive_int, default=64, help="admitted images before 503 (default: 64)"
    )
    p.add_argument("--max-images", type=positive_int, default=32, help="images per request (default: 32)")
    p.add_argument(
        "--max-body-mb", type=non_negative_float, default=32.0, help="request body limit in MiB (default: 32)"
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="onnxruntime threads (default: all cores)"
    )
    p.add_argument(
        "--conf", type=unit_float, default=SERVE_NMS.conf, help="confidence threshold (%(default)s)"
    )
    p.add_argument("--iou", type=unit_float, default=SERVE_NMS.iou, help="NMS IoU threshold (%(default)s)")
    p.add_argument(
        "--max-det", type=positive_int, default=SERVE_NMS.max_det, help="detections per image (%(default)s)"
    )
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="release cache (default: ~/.cache/detpipe/models)"
    )
    p.add_argument(
        "--graceful-timeout",
        type=positive_int,
        default=20,
        help="seconds to finish admitted requests on SIGTERM (default: 20)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from detpipe.export.runtime import PostprocessConfig
    from detpipe.serving.app import create_app
    from detpipe.serving.config import ServerConfig
    from detpipe.serving.dataplane import DataPlane
    from detpipe.serving.model import load_model

    cfg = ServerConfig(
        model=args.model,
        name=args.name,
        format=args.format,
        backend=args.backend,
        device_class=args.device_class,
        threads=args.threads,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_queue=args.max_queue,
        max_images=args.max_images,
        max_body_bytes=max(1, int(args.max_body_mb * 1024 * 1024)),
        nms=PostprocessConfig(conf=args.conf, iou=args.iou, max_det=args.max_det),
        cache_dir=args.cache_dir,
    )
    model = load_model(cfg)
    app = create_app(DataPlane(model, cfg))
    print(
        f"serving {model.name} {model.version} ({model.format} on {model.backend}) at http://{args.host}:{args.port}",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning" if args.quiet else "info",
        timeout_graceful_shutdown=args.graceful_timeout,
        log_config=None,  # keep detpipe's logging set-up
    )
    return 0
