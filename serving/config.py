"""The inference server's settings: one frozen dataclass that the CLI and tests build."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from detpipe.errors import InvalidInput
from detpipe.runtime.nms import PostprocessConfig
from detpipe.serving.defaults import SERVE_CONF, SERVE_IOU, SERVE_MAX_DET
from detpipe.store.manifest import check_model_name
from detpipe.store.uri import parse_uri

FORMATS = ("onnx", "onnx-int8", "engine")
"""Which file of a release the server runs: model.onnx, model.int8.onnx, engines/<class>/model.engine."""

SERVE_NMS = PostprocessConfig(conf=SERVE_CONF, iou=SERVE_IOU, max_det=SERVE_MAX_DET)
"""Default NMS for serving: ultralytics' predict threshold (validation's 0.001 is for mAP)."""


def default_cache_dir() -> Path:
    """Where fetched releases are kept: ``$XDG_CACHE_HOME/detpipe/models`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "detpipe" / "models"


@dataclass(frozen=True)
class ServerConfig:
    """What the server runs and how it batches.

    Attributes:
        model: a model file (``.onnx``, ``.engine``), or a release: ``s3://bucket/models/<name>/<version>``,
            ``file://...``/a directory holding ``manifest.json``; ``.../models/<name>`` takes the
            newest version.
        name: the model name in routes and metrics (default: the release name, or the file stem).
        format: which file of a release to run (:data:`FORMATS`); ignored for a plain file.
        backend: ``auto`` or a backend of :mod:`detpipe.runtime.backends` (``onnxruntime``,
            ``onnxruntime-cuda``, ``onnxruntime-trt``, ``tensorrt``).
        device_class: the ``engines/<device-class>/`` of a release (default: this machine's GPU).
        threads: onnxruntime intra-op threads (None: one per core).
        max_batch: most images per model call; clamped to a static-batch model's batch.
        max_delay_ms: how long the first image of a batch waits for others. 0 (Triton's
            default too): a batch is whatever queued up while the model was busy, so a lone
            request never waits; raise it on GPUs, where a bigger batch costs little.
        max_queue: images admitted (queued or running) before new requests get 503.
        max_images: images per request.
        max_body_bytes: request body limit (413 above it).
        max_image_pixels: image size limit (width x height), checked from the header before
            decoding; a decoded image takes 3 bytes a pixel.
        decode_threads: images decoded at once; with ``max_image_pixels`` it bounds the
            decoders' memory (``decode_threads * max_image_pixels * 3`` bytes at most).
        nms: default NMS settings (requests may override conf, iou and max_det).
        cache_dir: where releases are downloaded (verified against their manifest).
        shadow: a candidate model (file or release URI, as ``model``) run beside the live one
            on a sample of image requests, off the response path; None: no shadow.
        shadow_format: which file of the shadow's release to run.
        shadow_fraction: the share of image requests the shadow also sees.
        shadow_queue: shadow requests waiting at most; more are dropped (never waited for).
        max_json_bytes: limit of a JSON tensor body (v1 ``:predict``, OIP infer without the
            binary extension; 413 above it); parsed off the event loop, a JSON tensor takes
            about ten times its size in memory while it is parsed.
        max_inflight_bytes: request body bytes held at once, server-wide: a request reserves
            its ``Content-Length`` (or, without one, what it has read so far) before reading,
            and gets 503 with ``Retry-After`` beyond it.
        allow_reload: the repository load route is on (else it answers 403).
        reload_token: the bearer token the load route requires (never printed).
        reload_roots: where reloads may load from besides ``model``'s own root (see
            :mod:`detpipe.serving.access`).
        cache_keep: versions of each release kept in the cache; older ones are removed after a
            reload (never one being served).
        release_key: the public key releases must be signed with (``manifest.sig``).
        allow_unsigned: serve releases without checking a signature (local development only).
        sample_payloads: a store prefix (``s3://bucket/payloads``, a directory) where a share of
            image requests is written with the server's answer (:mod:`detpipe.serving.sampling`);
            None: off (the default). Field images may show people and plates: see the README.
        sample_rate: the probability that an image is sampled.
        sample_max_bytes: bytes this process writes there at most (images and JSON); then
            sampling stops.
        sample_queue: samples waiting to be written at most; more are dropped, never waited for.
    """

    model: str
    name: str | None = None
    format: str = "onnx"
    backend: str = "auto"
    device_class: str | None = None
    threads: int | None = None
    max_batch: int = 8
    max_delay_ms: float = 0.0
    max_queue: int = 64
    max_images: int = 32
    max_body_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    decode_threads: int = 2
    nms: PostprocessConfig = SERVE_NMS
    cache_dir: Path | None = None
    shadow: str | None = None
    shadow_format: str = "onnx"
    shadow_fraction: float = 0.1
    shadow_queue: int = 4
    max_json_bytes: int = 8 * 1024 * 1024
    max_inflight_bytes: int = 128 * 1024 * 1024
    allow_reload: bool = False
    reload_token: str | None = field(default=None, repr=False)
    reload_roots: tuple[str, ...] = ()
    cache_keep: int = 2
    release_key: Path | None = None
    allow_unsigned: bool = False
    sample_payloads: str | None = None
    sample_rate: float = 0.0
    sample_max_bytes: int = 512 * 1024 * 1024
    sample_queue: int = 32

    def __post_init__(self) -> None:
        if not str(self.model).strip():
            raise InvalidInput("no model: pass a .onnx/.engine file or a release URI")
        if self.name is not None:
            check_model_name(self.name)
        if self.format not in FORMATS:
            raise InvalidInput(f"format {self.format!r}: expected one of {', '.join(FORMATS)}")
        if self.shadow_format not in FORMATS:
            raise InvalidInput(f"shadow format {self.shadow_format!r}: expected one of {', '.join(FORMATS)}")
        positive = (
            "max_batch", "max_queue", "max_images", "max_body_bytes", "max_image_pixels",
            "decode_threads", "shadow_queue", "max_json_bytes", "max_inflight_bytes", "cache_keep",
            "sample_max_bytes", "sample_queue",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_delay_ms < 0:
            raise InvalidInput(f"max_delay_ms must be >= 0, got {self.max_delay_ms}")
        if not 0.0 <= self.shadow_fraction <= 1.0:
            raise InvalidInput(f"shadow_fraction must be in [0, 1], got {self.shadow_fraction}")
        if not 0.0 <= self.sample_rate <= 1.0:
            raise InvalidInput(f"sample_rate must be in [0, 1], got {self.sample_rate}")
        if self.sample_payloads is not None:  # refused at start, not on the first sample
            where = parse_uri(self.sample_payloads)  # a bucket's own areas: releases and OTA
            if where.scheme == "s3" and where.path.split("/")[0] in ("models", "ota"):
                raise InvalidInput(
                    f"--sample-payloads {self.sample_payloads}: inside the releases (models/) or the OTA "
                    "repository (ota/); give a prefix of its own, e.g. s3://detpipe/payloads"
                )
        if self.max_inflight_bytes < self.max_body_bytes:
            raise InvalidInput(
                f"max_inflight_bytes ({self.max_inflight_bytes}) is below max_body_bytes "
                f"({self.max_body_bytes}): a request at the body limit could never be read"
            )
        if self.allow_reload and not self.reload_token:
            raise InvalidInput("reload is allowed but has no token: pass --reload-token-file")

    @property
    def cache(self) -> Path:
        """The release cache directory."""
        return Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()
