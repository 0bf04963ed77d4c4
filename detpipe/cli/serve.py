"""``detpipe serve``: the FastAPI inference server (uvicorn) for one exported model or release."""

from __future__ import annotations

import argparse
import logging
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detpipe.cli.options import non_negative_float, port_number, positive_float, positive_int, unit_float
from detpipe.errors import InvalidInput
from detpipe.serving.defaults import SERVE_CONF, SERVE_IOU, SERVE_MAX_DET

if TYPE_CHECKING:
    from detpipe.serving.config import ServerConfig

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP (detection API, health, Prometheus metrics)",
        description=textwrap.fill(
            "Serve one YOLO model over HTTP with uvicorn. MODEL is a .onnx/.engine file or a "
            "release: s3://BUCKET/models/NAME/VERSION (MinIO settings from DETPIPE_S3_* / a mounted "
            "Secret), a local release directory, or .../models/NAME for the newest version; releases are "
            "downloaded into --cache-dir and checked against their manifest, and the manifest against its "
            "signature (--release-key), before anything is loaded. "
            "Concurrent requests are batched dynamically (--max-batch, --max-delay-ms); over --max-queue "
            "admitted images new requests get 503 with Retry-After. Routes: POST "
            "/v1/models/NAME:predict (KServe v1 JSON, base64 images), POST /v1/models/NAME:detect (raw "
            "image body or multipart upload), the Open Inference Protocol v2 (GET /v2, /v2/models/NAME, "
            "POST /v2/models/NAME/infer with JSON or binary tensors, as tritonclient sends them), POST "
            "/v2/repository/models/NAME/load (hot reload, off unless --allow-reload, then with a bearer "
            "token and only from MODEL's store or directory; SIGHUP reloads MODEL), /healthz, /readyz, "
            "/metrics (Prometheus), /docs. Image sizes are checked from the header before decoding "
            "(--max-image-pixels). --shadow runs a candidate model on a sample of requests off the "
            "response path and compares it with the live one in the metrics. --sample-payloads writes a "
            "share of image requests (the images as received and the answers) to the store, off the "
            "response path: off by default, since field images show people and plates. The model is "
            "loaded and warmed before the port opens: a bad MODEL exits 2 without serving. Request bodies "
            "in flight are capped server-wide (--max-inflight-mb), JSON tensor bodies have their own limit "
            "(--max-json-mb) and are parsed off the event loop; connections that trickle their headers "
            "are closed (--header-timeout).",
            width=88,
        ),
        epilog="examples:\n"
        "  detpipe serve --model runs/local/store/models/yolov8n-synth --allow-unsigned --port 8080  # dev\n"
        "  curl --data-binary @bus.jpg -H 'Content-Type: image/jpeg' \\\n"
        "      localhost:8080/v1/models/yolov8n-synth:detect\n"
        "  curl -F file=@bus.jpg localhost:8080/v1/models/yolov8n-synth:detect\n"
        "  detpipe serve --model s3://detpipe/models/yolov8n-coco/3 --release-key keys/release.pub \\\n"
        "      --format onnx-int8 --allow-reload --reload-token-file /etc/detpipe/reload-token\n"
        '  curl -X POST -H "Authorization: Bearer $(cat /etc/detpipe/reload-token)" \\\n'
        "      localhost:8080/v2/repository/models/yolov8n-coco/load            # reload (newest release)\n"
        "  detpipe serve --model s3://detpipe/models/yolov8n-coco/3 --release-key keys/release.pub \\\n"
        "      --shadow s3://detpipe/models/yolov8n-coco/4\n"
        "  detpipe serve --model s3://detpipe/models/yolov8n-coco/3 --release-key keys/release.pub \\\n"
        "      --sample-payloads s3://detpipe/payloads --sample-rate 0.01   # 1 % of images to the store",
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
        "--max-image-pixels",
        type=positive_int,
        default=40_000_000,
        help="largest image (width x height), read from its header before decoding (default: 40000000)",
    )
    p.add_argument(
        "--decode-threads",
        type=positive_int,
        default=2,
        help="images decoded at once; bounds decoder memory to N x max-image-pixels x 3 bytes (default: 2)",
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="onnxruntime threads (default: all cores)"
    )
    p.add_argument(
        "--shadow",
        default=None,
        metavar="URI",
        help="a candidate model (file or release URI) run on a sample of image requests beside the live "
        "one, off the response path; compared in the detpipe_shadow_* metrics",
    )
    p.add_argument(
        "--shadow-format",
        default="onnx",
        choices=("onnx", "onnx-int8", "engine"),
        help="which file of the shadow's release (default: onnx)",
    )
    p.add_argument(
        "--shadow-fraction",
        type=unit_float,
        default=0.1,
        help="share of image requests the shadow also runs (default: 0.1)",
    )
    p.add_argument(
        "--shadow-queue",
        type=positive_int,
        default=4,
        help="shadow requests queued at most; more are dropped, never waited for (default: 4)",
    )
    p.add_argument("--conf", type=unit_float, default=SERVE_CONF, help="confidence threshold (%(default)s)")
    p.add_argument("--iou", type=unit_float, default=SERVE_IOU, help="NMS IoU threshold (%(default)s)")
    p.add_argument(
        "--max-det", type=positive_int, default=SERVE_MAX_DET, help="detections per image (%(default)s)"
    )
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="release cache (default: ~/.cache/detpipe/models)"
    )
    p.add_argument(
        "--cache-keep",
        type=positive_int,
        default=2,
        help="versions of each release kept in --cache-dir; older ones are removed after a reload, never "
        "the one served (default: 2)",
    )
    p.add_argument(
        "--graceful-timeout",
        type=positive_int,
        default=20,
        help="seconds to finish admitted requests on SIGTERM (default: 20)",
    )
    _add_limit_options(p)
    _add_security_options(p)
    _add_sampling_options(p)
    p.set_defaults(func=_run)


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "field sampling",
        textwrap.fill(
            "Off by default. The images clients send are stored as they are (people, faces, number "
            "plates, whatever the camera saw) and kept until deleted: sample only where the data's owner "
            "agrees, into a bucket only the labeling and training jobs can read, with a lifecycle rule "
            "that expires payloads/ (see the README's 'Field sampling'). OIP infer requests (tensors) "
            "are never sampled.",
            width=78,
        ),
    )
    g.add_argument(
        "--sample-payloads",
        default=None,
        metavar="URI",
        help="store prefix for sampled requests (s3://BUCKET/payloads or a directory): each sampled image as "
        "<model>/<version>/<yyyy-mm-dd>/<id>.jpg (as received) and <id>.json (time, version, detections); "
        "written by one thread off the response path, what mine --pool reads",
    )
    g.add_argument(
        "--sample-rate",
        type=unit_float,
        default=None,
        metavar="F",
        help="probability that an image of a :detect or :predict request is sampled, in [0, 1] (required "
        "with --sample-payloads)",
    )
    g.add_argument(
        "--sample-max-mb",
        type=positive_float,
        default=512.0,
        metavar="MIB",
        help="MiB (images and JSON) this process writes at most; then sampling stops, counted as "
        "dropped_cap (default: 512)",
    )
    g.add_argument(
        "--sample-queue",
        type=positive_int,
        default=32,
        metavar="N",
        help="samples waiting for the store at most (and 64 MiB); more are dropped and counted as "
        "dropped_full, never waited for (default: 32)",
    )


def _add_limit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-json-mb",
        type=positive_float,
        default=8.0,
        help="limit of a JSON tensor body (:predict, v2 infer without binary data; 413 above it), which "
        "takes about 10x its size in memory while parsed (default: 8)",
    )
    p.add_argument(
        "--max-inflight-mb",
        type=positive_float,
        default=128.0,
        help="request body MiB held at once, server-wide: a request reserves its Content-Length before "
        "its body is read; beyond it, 503 with Retry-After (default: 128; at least --max-body-mb)",
    )
    p.add_argument(
        "--limit-concurrency",
        type=positive_int,
        default=128,
        help="connections and requests at once; more get 503 from uvicorn (default: 128)",
    )
    p.add_argument(
        "--timeout-keep-alive",
        type=positive_float,
        default=5.0,
        help="seconds an idle keep-alive connection stays open (default: 5)",
    )
    p.add_argument(
        "--header-timeout",
        type=positive_float,
        default=10.0,
        help="seconds a connection has to send a request's complete headers, from its first byte; "
        "then it is closed (slowloris; default: 10)",
    )
    p.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="the event loop, as uvicorn's --loop: uvloop (libuv; installed with detpipe) or the "
        "standard asyncio loop; auto: uvloop when it imports (default: auto)",
    )


def _add_security_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--release-key",
        type=Path,
        default=None,
        metavar="PUB",
        help="public key releases must be signed with (manifest.sig, detpipe release sign), checked at "
        "start and on every reload before anything is downloaded (default: $DETPIPE_RELEASE_KEY); a "
        "release is refused without it or --allow-unsigned",
    )
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="serve releases without checking their signature: LOCAL DEVELOPMENT ONLY (logged as a "
        "warning; every path and name check still applies)",
    )
    p.add_argument(
        "--allow-reload",
        action="store_true",
        help="turn on POST /v2/repository/models/NAME/load (off: 403); it then needs "
        "Authorization: Bearer <token of --reload-token-file>",
    )
    p.add_argument(
        "--reload-token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="file holding the reload bearer token, mode 600 (required with --allow-reload; default: "
        "$DETPIPE_RELOAD_TOKEN_FILE)",
    )
    p.add_argument(
        "--reload-root",
        action="append",
        default=[],
        metavar="URI",
        help="also allow reloads from under URI (a store root or a directory; repeatable). Without it, "
        "only MODEL's store root, or a model file's directory as given (DIR/current, resolved at each "
        "reload: not the inactive slot)",
    )


def _run(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    # a second bound behind the header check: OpenCV refuses to decode more pixels than this
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(args.max_image_pixels))
    import uvicorn

    from detpipe.serving.app import create_app
    from detpipe.serving.dataplane import DataPlane
    from detpipe.serving.model import load_model
    from detpipe.serving.protocol import header_timeout_protocol

    cfg = _config(args, os.environ)
    if cfg.allow_unsigned:
        log.warning("--allow-unsigned: releases are served WITHOUT signature checks (local development only)")
    loop = _event_loop(args.loop)  # before the model's load: a missing uvloop fails at once
    model = load_model(cfg)  # loaded and warmed up
    shadow = None
    if cfg.shadow:
        shadow = load_model(dataclasses.replace(cfg, model=cfg.shadow, format=cfg.shadow_format, name=None))
        share = f"{cfg.shadow_fraction:.0%}"
        print(f"shadow {shadow.name} {shadow.version} on {share} of image requests", flush=True)
    plane = DataPlane(model, cfg, shadow=shadow)
    sampler = _sampler(cfg, model, plane.metrics)
    app = create_app(plane, sampler)
    print(
        f"serving {model.name} {model.version} ({model.format} on {model.backend}) at http://{args.host}:{args.port}"
        f" (reload {'on, with a token' if cfg.allow_reload else 'off'}; event loop {loop})",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        http=header_timeout_protocol(args.header_timeout),
        limit_concurrency=args.limit_concurrency,
        timeout_keep_alive=args.timeout_keep_alive,
        loop=loop,
        log_level="warning" if args.quiet else "info",
        timeout_graceful_shutdown=args.graceful_timeout,
        log_config=None,  # keep detpipe's logging set-up
    )
    return 0


def _event_loop(wanted: str) -> str:
    """``--loop`` resolved as uvicorn's ``auto`` does: uvloop when it imports, else asyncio.

    Raises:
        Unavailable: ``uvloop`` asked for and not installed.
    """
    if wanted == "asyncio":
        return wanted
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if wanted == "uvloop":
            from detpipe.errors import Unavailable

            raise Unavailable("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        return "asyncio"
    return "uvloop"


def _config(args: argparse.Namespace, env: Mapping[str, str]) -> ServerConfig:
    """The server's settings from the arguments (and DETPIPE_RELEASE_KEY, DETPIPE_RELOAD_TOKEN_FILE).

    Raises:
        InvalidInput: an unreadable or shared token file, or settings that do not fit together.
    """
    from detpipe.runtime.nms import PostprocessConfig
    from detpipe.serving.access import read_token
    from detpipe.serving.config import ServerConfig

    release_key = args.release_key or (None if args.allow_unsigned else _env_path(env, "DETPIPE_RELEASE_KEY"))
    if args.release_key and args.allow_unsigned:
        raise InvalidInput("pass --release-key or --allow-unsigned, not both")
    token = None
    if args.allow_reload:
        token_file = args.reload_token_file or _env_path(env, "DETPIPE_RELOAD_TOKEN_FILE")
        if token_file is None:
            raise InvalidInput("--allow-reload needs --reload-token-file FILE (or DETPIPE_RELOAD_TOKEN_FILE)")
        token = read_token(token_file)
    if (args.sample_payloads is None) != (args.sample_rate is None):
        raise InvalidInput("--sample-payloads and --sample-rate go together: pass both or neither")
    return ServerConfig(
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
        max_body_bytes=_mib(args.max_body_mb),
        max_image_pixels=args.max_image_pixels,
        decode_threads=args.decode_threads,
        nms=PostprocessConfig(conf=args.conf, iou=args.iou, max_det=args.max_det),
        cache_dir=args.cache_dir,
        shadow=args.shadow,
        shadow_format=args.shadow_format,
        shadow_fraction=args.shadow_fraction,
        shadow_queue=args.shadow_queue,
        max_json_bytes=_mib(args.max_json_mb),
        max_inflight_bytes=_mib(args.max_inflight_mb),
        allow_reload=args.allow_reload,
        reload_token=token,
        reload_roots=tuple(args.reload_root),
        cache_keep=args.cache_keep,
        release_key=release_key,
        allow_unsigned=args.allow_unsigned,
        sample_payloads=args.sample_payloads,
        sample_rate=args.sample_rate or 0.0,
        sample_max_bytes=_mib(args.sample_max_mb),
        sample_queue=args.sample_queue,
    )


def _sampler(cfg: ServerConfig, model: Any, metrics: Any) -> Any:
    """The payload sampler of ``--sample-payloads`` (None when off).

    Raises:
        InvalidInput: a model name or version that cannot be a store path segment, or bad S3 settings.
    """
    if cfg.sample_payloads is None:
        return None
    from detpipe.serving.sampling import PayloadSampler, check_segments
    from detpipe.store import open_store

    check_segments(model.name, model.version)
    store = open_store(cfg.sample_payloads)
    print(f"sampling {cfg.sample_rate:.2%} of image requests to {store.uri}", flush=True)
    return PayloadSampler(store, cfg.sample_rate, cfg.sample_max_bytes, metrics, queue_size=cfg.sample_queue)


def _mib(value: float) -> int:
    return max(1, int(value * 1024 * 1024))


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    return Path(env[name]) if env.get(name, "").strip() else None
