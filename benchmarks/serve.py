"""Benchmark: the inference server against the same model run directly on onnxruntime.

    .venv/bin/python benchmarks/serve.py                          # YOLOv8n, 640 px, 2 threads
    .venv/bin/python benchmarks/serve.py --imgsz 320 --requests 200 --json runs/bench-serve/r.json
    .venv/bin/python benchmarks/serve.py --model runs/local/pipeline_root/.../model.onnx
    .venv/bin/python benchmarks/serve.py --modes direct,c1,sampling --rounds 5   # field sampling only
    .venv/bin/python benchmarks/serve.py --imgsz 320 --modes model,oip,kserve    # the server's own cost

One run, one machine, all on loopback:

1. model: ``--model`` (an ONNX file with a dynamic batch axis), or YOLOv8n from its YAML
   exported at ``--imgsz`` with a dynamic batch (random weights: the network's cost does not
   depend on them; NMS sees few boxes at conf 0.25, as with a trained model on most images);
2. images: ``detpipe data synth`` renders ``--images`` JPEGs (640x480 and other aspect ratios);
3. peer: the same ONNX file in this process (:class:`OnnxPredictor`, same threads, the
   server's NMS settings), one image after another: JPEG decode + letterbox + network + NMS;
4. server: ``detpipe serve`` processes on a free port; each request POSTs one JPEG to
   ``:detect`` over a keep-alive connection. Measured at concurrency 1 (the latency cost of
   HTTP, JSON and the batcher) and at ``--concurrency`` (throughput), with dynamic
   batching (``--max-batch``) and with ``--max-batch 1``; the modes run in ``--rounds``
   interleaved rounds, so background load hits all of them alike.

5. shadow: a server with ``--shadow`` (a copy of the model) at ``--shadow-fraction`` 0.1,
   at concurrency 1 beside the plain server: what the sampled shadow costs the live p50;
6. Open Inference Protocol: ``/v2/models/model/infer`` with the letterboxed input tensor as
   binary data (tritonclient's default) and as JSON ``data``, at concurrency 1;
7. reload under load: every round, a repository load swaps the model (a copy, another
   version) in the middle of a ``--concurrency`` run; every request must still answer 200.
   The batched server runs with ``--allow-reload`` and a token file (sent as a bearer token)
   and ``--reload-root`` the work directory; the unbatched one with ``--max-json-mb 64``, as
   a 640 px JSON tensor is about 25 MB.
8. field sampling: a server with ``--sample-payloads`` on a moto S3 server process (started
   here, on the same cores; ``--sample-store local``: a directory) at ``--sample-rate``
   (default 1: every request written, the worst case), at concurrency 1 beside the plain
   server; its ``detpipe_payload_samples_total`` at the end says how many were written or
   dropped. And what sampling adds to a request's own
   path, measured in this process: :meth:`PayloadSampler.offer` (the draw, the queue) on every
   image, at rate 1, with the writer thread writing to a local directory meanwhile.

9. the network alone (``model``): ``OnnxPredictor.infer`` on the letterboxed tensor, what an
   OIP infer call serves; the OIP modes are also sent by tritonclient.http (binary tensors
   both ways, the output decoded to numpy), and every OIP client records its own CPU time
   per request (``time.thread_time``), so what the *server* adds is ``p50 - model p50 -
   client CPU p50`` (printed as ``..._server_ms``; the goal at 320 px: <= 2 ms). For the
   binary mode the server's own histograms (``/metrics``, read before and after each round)
   split that share: the app's request time (middleware to response sent) less its model
   call (stack + network) is what the app adds in-process (body read, parse, the hops to the
   model thread and back, encoding, send); the rest of the p50 beyond the client's CPU is
   uvicorn's header parsing and the loopback transfer outside the app (this split is of
   means per round, its medians over rounds printed). Two pairings take the model's time from
   the server itself, so the network-alone loop's drift from round to round drops out: each
   request's latency less its client CPU and its response's ``Server-Timing``
   (``inference;dur=``, the request's model calls), p50 over all requests
   (``server_share_p50``); and, for every OIP client, each round's mean latency less its
   client CPU and the ``/metrics`` model call (``server_ms_own_clock_per_round``);
10. the peer ``kserve``: KServe's python ModelServer (``benchmarks/kserve_peer.py``, run from
   its own virtualenv ``--kserve-venv``, made with ``kserve==0.21.0`` when missing) on the
   same ONNX file and threads, sent the same OIP requests by both clients;
11. ``--baseline-src DIR`` (with ``oip``): a ``--max-batch 1`` server run from another source
   tree (``git archive REV detpipe serving``, ``serving/`` moved under ``detpipe/``), sent
   the same OIP requests by both clients in the same rounds (``..._baseline``): a change's
   before and after in one run. ``--baseline-args '--loop asyncio'`` does the same for a
   server option (this tree's server, or ``--baseline-src``'s, with those options added).

``--modes`` picks some of them (``direct``, ``c1``, ``shadow``, ``sampling``, ``concurrent``,
``oip``, ``reload``); the ratios need both of their modes.

Ratios printed: server p50 latency / direct p50 (concurrency 1); server throughput at
``--concurrency`` / direct sequential throughput; batched / unbatched server throughput;
shadow-on / shadow-off live p50; sampling-on / sampling-off p50 and p90; OIP binary / JSON
throughput. The client runs on the same cores as the server, so throughput ratios are
conservative. The load average at the start and the end is recorded (the machine may be shared).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # store_servers: the moto server process, as the tests start it

from detpipe.runtime.image import decode_image, preprocess  # noqa: E402
from detpipe.runtime.predictors import OnnxPredictor  # noqa: E402
from detpipe.serving import timing  # noqa: E402
from detpipe.serving.config import SERVE_NMS  # noqa: E402


def make_model(out: Path, imgsz: int) -> Path:
    """YOLOv8n (random weights) exported to ONNX with a dynamic batch axis."""
    from detpipe.export.model import load_detection_model
    from detpipe.export.onnx_export import OnnxExportConfig, export_onnx

    cfg = OnnxExportConfig(imgsz=(imgsz, imgsz), dynamic_batch=True)
    return export_onnx(load_detection_model("yolov8n.yaml"), out / "model.onnx", cfg).path


def make_images(out: Path, n: int) -> list[bytes]:
    """``n`` synthetic JPEGs (detpipe data synth, 640 px on the long side)."""
    from detpipe.data.synth import SynthConfig, synthesize

    synthesize(SynthConfig(out=out / "synth", images=n, val_images=1, classes=6, imgsz=640, seed=0))
    paths = sorted((out / "synth" / "images" / "train2017").glob("*.jpg"))[:n]
    return [p.read_bytes() for p in paths]


@dataclass(frozen=True)
class Measurement:
    """Per-request latencies (ms), the wall time of one batch of requests and, for a client run
    in this thread, the client's own CPU time per request (ms; its share of each latency)."""

    latencies_ms: list[float]
    wall_s: float
    client_cpu_ms: list[float] | None = None
    server_model_ms: list[float] | None = None  # each response's Server-Timing (its model calls)


def summarize(runs: list[Measurement]) -> dict[str, float]:
    """Percentiles over every request of every round; throughput over their summed wall time."""
    ms = np.concatenate([r.latencies_ms for r in runs])
    wall = sum(r.wall_s for r in runs)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    row = {"p50": float(p50), "p90": float(p90), "p99": float(p99), "images_per_s": len(ms) / wall}
    if all(r.client_cpu_ms for r in runs):
        row["client_cpu_p50"] = float(np.median(np.concatenate([r.client_cpu_ms for r in runs])))
    if all(r.client_cpu_ms and r.server_model_ms for r in runs):  # paired request by request
        share = [np.subtract(np.subtract(r.latencies_ms, r.client_cpu_ms), r.server_model_ms) for r in runs]
        row["server_share_p50"] = float(np.median(np.concatenate(share)))
        row["server_model_p50"] = float(np.median(np.concatenate([r.server_model_ms for r in runs])))
    return row


def server_timings(headers: list[str | None]) -> list[float] | None:
    """Each response's ``Server-Timing`` (:mod:`detpipe.serving.timing`) in ms; None when no
    response had one (KServe, an older tree)."""
    if all(h is None for h in headers):
        return None
    out = [timing.model_ms(h) for h in headers]
    if None in out:
        raise SystemExit(f"a response without Server-Timing {timing.METRIC};dur=... among {set(headers)}")
    return out


def direct(predictor: OnnxPredictor, jpegs: list[bytes], requests: int) -> Measurement:
    """The peer: decode + predict in this process, one image at a time."""
    lat = []
    start = time.perf_counter()
    for i in range(requests):
        t0 = time.perf_counter()
        predictor([decode_image(jpegs[i % len(jpegs)])])
        lat.append((time.perf_counter() - t0) * 1000)
    return Measurement(lat, time.perf_counter() - start)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``detpipe serve`` on a free loopback port; stopped with SIGTERM."""

    def __init__(
        self,
        model: Path,
        threads: int,
        max_batch: int,
        max_delay_ms: float,
        log: Path,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "detpipe.cli.main", "-q", "serve", "--model", str(model),
               "--name", "model", "--port", str(self.port), "--threads", str(threads),
               "--max-batch", str(max_batch), "--max-delay-ms", str(max_delay_ms),
               "--max-queue", "256", *extra]  # fmt: skip
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        self.wait_ready("/readyz", log)

    def wait_ready(self, path: str, log: Path) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.proc.args[1]} exited: see {log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"server not ready: see {log}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()

    def metric(self, name: str) -> dict[str, float]:
        """The samples of one metric on ``/metrics``: {labels text: value}."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                labels, _, value = line[len(name) :].rpartition(" ")
                out[labels.strip()] = float(value)
        return out


KSERVE_VENV = ROOT / "runs" / "bench-venvs" / "kserve"


def kserve_python(venv: Path) -> Path:
    """The KServe peer's interpreter: ``venv`` made with :data:`kserve_peer.REQUIREMENTS` if missing."""
    from kserve_peer import REQUIREMENTS

    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making the KServe peer's virtualenv {venv} ({', '.join(REQUIREMENTS)})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True)
    return python


class KServeProcess(ServerProcess):
    """KServe's python ModelServer (``kserve_peer.py``) on the same ONNX file, from its own venv."""

    def __init__(self, python: Path, model: Path, threads: int, log: Path) -> None:
        self.port = free_port()
        cmd = [str(python), str(ROOT / "benchmarks" / "kserve_peer.py"), "--model", str(model),
               "--port", str(self.port), "--threads", str(threads)]  # fmt: skip
        self.log = log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready("/v2/health/ready", log)


def wait_drained(server: ServerProcess, timeout: float = 120.0) -> dict[str, float]:
    """The sampling server's outcome counts once nothing waits to be written."""
    deadline = time.monotonic() + timeout
    while server.metric("detpipe_payload_samples_queued").get("", 0.0) and time.monotonic() < deadline:
        time.sleep(0.2)
    counts = server.metric("detpipe_payload_samples_total")
    return {k.split('"')[1]: v for k, v in counts.items()}


def offer_cost(work: Path, jpegs: list[bytes], calls: int = 1000) -> dict[str, float]:
    """Microseconds per :meth:`PayloadSampler.offer` at rate 1 (p50, p99), the writer running."""
    from types import SimpleNamespace

    from detpipe.serving.metrics import ServerMetrics
    from detpipe.serving.sampling import PayloadSampler
    from detpipe.store import open_store

    sampler = PayloadSampler(open_store(work / "offer-cost"), 1.0, 1 << 40, ServerMetrics(), queue_size=calls)
    model = SimpleNamespace(name="model", version="1.0.0")
    answer = {"width": 640, "height": 480, "detections": [{"box": [1.0, 2.0, 3.0, 4.0], "score": 0.5,
              "class_id": 0, "class_name": "a"}] * 5}  # fmt: skip
    sampler.start()
    us = []
    for i in range(calls):
        t0 = time.perf_counter()
        sampler.offer(model, [jpegs[i % len(jpegs)]], [answer], SERVE_NMS, "detect")
        us.append((time.perf_counter() - t0) * 1e6)
        time.sleep(0.0005)  # requests arrive over time, not all at once
    sampler.stop(timeout=120)
    p50, p99 = np.percentile(us, [50, 99])
    return {"p50_us": float(p50), "p99_us": float(p99), "calls": calls}


def oip_bodies(x: np.ndarray) -> dict[str, tuple[bytes, dict[str, str]]]:
    """One image's input tensor as an infer request: binary tensor data and JSON data."""
    inp = {"name": "images", "datatype": "FP32", "shape": list(x.shape)}
    header = json.dumps({"inputs": [{**inp, "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    binary = (header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))})
    as_json = json.dumps({"inputs": [{**inp, "data": x.reshape(-1).tolist()}]}).encode()
    return {"binary": binary, "json": (as_json, {"Content-Type": "application/json"})}


def model_only(predictor: OnnxPredictor, x: np.ndarray, requests: int) -> Measurement:
    """The network alone on the letterboxed tensor (``predictor.infer``): what OIP infer serves."""
    lat = []
    start = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        predictor.infer(x)
        lat.append((time.perf_counter() - t0) * 1000)
    return Measurement(lat, time.perf_counter() - start)


def infer(port: int, body: tuple[bytes, dict[str, str]], requests: int) -> Measurement:
    """``requests`` OIP infer calls, one after another on a keep-alive connection (http.client:
    the least a client can do, the response read whole and not decoded)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    lat, cpu, timings = [], [], []
    start = time.perf_counter()
    for _ in range(requests):
        t0, c0 = time.perf_counter(), time.thread_time()
        conn.request("POST", "/v2/models/model/infer", body[0], body[1])
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise SystemExit(f"infer failed: {resp.status} {data[:200]!r}")
        lat.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
        timings.append(resp.getheader(timing.HEADER))
    return Measurement(lat, time.perf_counter() - start, cpu, server_timings(timings))


INFER_ROUTE = 'route="/v2/models/{name}/infer"'


def server_times(server: ServerProcess) -> tuple[float, float, float, float]:
    """The infer route's request seconds and count, and the model calls' seconds and count."""
    requests = "detpipe_http_request_duration_seconds"
    req_sum = sum(v for k, v in server.metric(f"{requests}_sum").items() if INFER_ROUTE in k)
    req_n = sum(v for k, v in server.metric(f"{requests}_count").items() if INFER_ROUTE in k)
    model_sum = server.metric("detpipe_inference_duration_seconds_sum").get("", 0.0)
    model_n = server.metric("detpipe_inference_duration_seconds_count").get("", 0.0)
    return req_sum, req_n, model_sum, model_n


def inside_split(before: tuple[float, ...], after: tuple[float, ...], run: Measurement) -> dict[str, float]:
    """One round's means (ms a request): the client's latency and CPU, and between two
    :func:`server_times` readings the app's request time and model call."""
    d = [b - a for a, b in zip(before, after, strict=True)]
    if not (d[1] and d[3]):
        raise SystemExit(f"/metrics counted no infer requests or model calls in the round ({INFER_ROUTE}?)")
    request, model = d[0] / d[1] * 1000, d[2] / d[3] * 1000
    latency, cpu = float(np.mean(run.latencies_ms)), float(np.mean(run.client_cpu_ms or [0.0]))
    return {
        "latency_ms": latency,
        "client_cpu_ms": cpu,
        "request_ms": request,
        "model_call_ms": model,
        "app_beyond_model_ms": request - model,
        "outside_app_ms": latency - cpu - request,
    }


def infer_triton(port: int, x: np.ndarray, requests: int) -> Measurement:
    """``requests`` infer calls with tritonclient.http (binary tensor data both ways, its defaults),
    the output decoded to numpy as a user's code would."""
    import tritonclient.http as httpclient

    class Client(httpclient.InferenceServerClient):
        """Keeps each response's Server-Timing header (``InferResult`` drops the headers)."""

        server_timing: str | None = None

        def _post(self, *args: object, **kwargs: object) -> object:  # tritonclient 2.x's one POST path
            response = super()._post(*args, **kwargs)
            self.server_timing = response.get(timing.HEADER)
            return response

    client = Client(f"127.0.0.1:{port}", connection_timeout=120, network_timeout=120)
    inp = httpclient.InferInput("images", list(x.shape), "FP32")
    lat, cpu, timings = [], [], []
    start = time.perf_counter()
    try:
        for _ in range(requests):
            t0, c0 = time.perf_counter(), time.thread_time()
            inp.set_data_from_numpy(x, binary_data=True)
            result = client.infer("model", [inp])
            result.as_numpy("output0")
            lat.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
            timings.append(client.server_timing)
    finally:
        client.close()
    return Measurement(lat, time.perf_counter() - start, cpu, server_timings(timings))


def reload_under_load(
    port: int, uri: Path, token: str, jpegs: list[bytes], requests: int, concurrency: int
) -> Measurement:
    """A ``concurrency`` run with one repository load of ``uri`` fired in its middle."""

    def fire() -> None:
        time.sleep(0.3)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        body = json.dumps({"parameters": {"uri": str(uri)}}).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        conn.request("POST", "/v2/repository/models/model/load", body, headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise SystemExit(f"reload failed: {resp.status} {resp.read()[:200]!r}")

    trigger = threading.Thread(target=fire)
    trigger.start()
    try:
        return load(port, jpegs, requests, concurrency)
    finally:
        trigger.join()


def load(port: int, jpegs: list[bytes], requests: int, concurrency: int) -> Measurement:
    """``requests`` POSTs of one JPEG each from ``concurrency`` keep-alive clients (all must answer 200)."""
    lat: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            conn.request(
                "POST", "/v1/models/model:detect", jpegs[i % len(jpegs)], {"Content-Type": "image/jpeg"}
            )
            resp = conn.getresponse()
            body = resp.read()
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                lat.append(ms)
                if resp.status != 200:
                    errors.append(f"{resp.status} {body[:100]!r}")

    workers = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} failed requests, first: {errors[0]}")
    return Measurement(lat, wall)


MODES = ("direct", "model", "c1", "shadow", "sampling", "concurrent", "oip", "kserve", "reload")
OIP_MODES = ("oip_binary_c1", "oip_triton_c1", "oip_binary_c1_baseline", "oip_triton_c1_baseline")
NEEDS = {  # which server processes each mode uses
    "c1": ("unbatched",), "shadow": ("shadow",), "sampling": ("sampling",),
    "concurrent": ("batched", "unbatched"), "oip": ("unbatched",), "reload": ("batched",),
    "kserve": ("kserve",),
}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", type=Path, default=None, help="ONNX file (default: YOLOv8n exported at --imgsz)"
    )
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--images", type=int, default=32, help="distinct JPEGs sent round-robin")
    p.add_argument("--requests", type=int, default=48, help="requests per measurement and round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (load hits every mode alike)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads, server and peer alike")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-delay-ms", type=float, default=0.0)
    p.add_argument("--shadow-fraction", type=float, default=0.1)
    p.add_argument("--sample-rate", type=float, default=1.0, help="field sampling's rate (sampling mode)")
    p.add_argument(
        "--sample-store",
        choices=("moto", "local"),
        default="moto",
        help="where the sampling server writes: a moto S3 process here (default) or a local directory",
    )
    p.add_argument(
        "--moto-nice",
        type=int,
        default=0,
        help="nice value of the moto process (19: it gets only idle CPU, as a store on other machines)",
    )
    p.add_argument(
        "--kserve-venv",
        type=Path,
        default=KSERVE_VENV,
        help="the KServe peer's virtualenv (kserve mode; made when missing; default: %(default)s)",
    )
    p.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="oip mode: also measure a --max-batch 1 server run from this source tree (DIR/detpipe, with "
        "serving/ as DIR/detpipe/serving), in the same rounds: before/after in one run",
    )
    p.add_argument(
        "--baseline-args",
        default="",
        help="oip mode: also measure a --max-batch 1 server with these extra `detpipe serve` options "
        "(e.g. '--loop asyncio'), in the same rounds; with --baseline-src, that tree's server",
    )
    p.add_argument("--modes", default=",".join(MODES), help=f"some of {','.join(MODES)} (default: all)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        p.error(f"--modes: expected some of {', '.join(MODES)}, got {args.modes!r}")
    load_start = os.getloadavg()  # the machine may be shared: say how busy it was

    work = Path(tempfile.mkdtemp(prefix="detpipe-bench-serve-"))
    model = args.model or make_model(work, args.imgsz)
    jpegs = make_images(work, args.images)
    c = args.concurrency
    copies = [work / "reload-a.onnx", work / "reload-b.onnx"]
    for i, copy in enumerate(copies):  # same network, another file: another version to swap to
        variant = onnx.load(str(model))
        variant.metadata_props.add(key="benchmark_copy", value=str(i))
        onnx.save(variant, str(copy))
    shadow_args = ("--shadow", str(copies[0]), "--shadow-fraction", str(args.shadow_fraction))
    token = os.urandom(16).hex()
    token_file = work / "reload-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    reload_args = ("--allow-reload", "--reload-token-file", str(token_file), "--reload-root", str(work))
    wanted = {name for m in modes for name in NEEDS.get(m, ())}
    if args.baseline_src is not None and not (args.baseline_src / "detpipe" / "serving" / "app.py").is_file():
        p.error(f"--baseline-src {args.baseline_src}: no detpipe/serving/app.py under it")
    if (args.baseline_src is not None or args.baseline_args) and "oip" in modes:
        wanted.add("baseline")
    baseline_env = {"PYTHONPATH": str(args.baseline_src.resolve())} if args.baseline_src else {}
    moto, sample_env, sample_to = None, {}, str(work / "payloads")
    if "sampling" in wanted and args.sample_store == "moto":
        from store_servers import MotoServer, s3_env

        moto = MotoServer()
        os.setpriority(os.PRIO_PROCESS, moto.proc.pid, args.moto_nice)
        sample_env = s3_env(moto.endpoint)
        sample_to = f"s3://{moto.make_bucket()}/payloads"
    sample_args = ("--sample-payloads", sample_to, "--sample-rate", str(args.sample_rate))
    starts = {
        "batched": lambda: ServerProcess(
            model, args.threads, args.max_batch, args.max_delay_ms, work / "batched.log", *reload_args
        ),
        "unbatched": lambda: ServerProcess(
            model, args.threads, 1, args.max_delay_ms, work / "unbatched.log", "--max-json-mb", "64"
        ),
        "shadow": lambda: ServerProcess(
            model, args.threads, 1, args.max_delay_ms, work / "shadow.log", *shadow_args
        ),
        "sampling": lambda: ServerProcess(
            model, args.threads, 1, args.max_delay_ms, work / "sampling.log", *sample_args, env=sample_env
        ),
        "baseline": lambda: ServerProcess(
            model,
            args.threads,
            1,
            args.max_delay_ms,
            work / "baseline.log",
            *args.baseline_args.split(),
            env=baseline_env,
        ),
        "kserve": lambda: KServeProcess(
            kserve_python(args.kserve_venv), model, args.threads, work / "kserve.log"
        ),
    }
    servers: dict[str, ServerProcess] = {}
    try:
        for name in (n for n in starts if n in wanted):
            servers[name] = starts[name]()
    except BaseException:
        for server in servers.values():
            server.stop()
        if moto is not None:
            moto.kill()
        raise
    samples: dict[str, float] = {}
    offer: dict[str, float] = {}
    runs: dict[str, list[Measurement]] = {}
    inside: dict[str, list[dict[str, float]]] = {}  # OIP runs on detpipe servers: the in-server split

    def timed(name: str, server: ServerProcess, call: Callable[[], Measurement]) -> None:
        """Run ``call`` (a round of ``name``) with the server's /metrics read before and after."""
        before = server_times(server)
        run = call()
        runs.setdefault(name, []).append(run)
        inside.setdefault(name, []).append(inside_split(before, server_times(server), run))

    peer = OnnxPredictor(model, threads=args.threads, postprocess_cfg=SERVE_NMS)  # the server's NMS too
    x, _ = preprocess([decode_image(jpegs[0])], peer.imgsz)
    bodies = oip_bodies(x)
    try:
        direct(peer, jpegs, min(20, args.requests))  # warm-up
        for name, server in servers.items():
            if name == "kserve":  # OIP only
                infer(server.port, bodies["binary"], min(20, args.requests))
            else:
                load(server.port, jpegs, min(20, args.requests), 1)
        plain, base = servers.get("unbatched"), servers.get("baseline")
        for r in range(args.rounds):
            if "direct" in modes:
                runs.setdefault("direct", []).append(direct(peer, jpegs, args.requests))
            if "model" in modes:
                runs.setdefault("model", []).append(model_only(peer, x, args.requests))
            if "c1" in modes:
                runs.setdefault("server_c1", []).append(
                    load(servers["unbatched"].port, jpegs, args.requests, 1)
                )
            if "sampling" in modes:
                runs.setdefault("server_c1_sampling", []).append(
                    load(servers["sampling"].port, jpegs, args.requests, 1)
                )
            if "shadow" in modes:
                runs.setdefault("server_c1_shadow", []).append(
                    load(servers["shadow"].port, jpegs, args.requests, 1)
                )
            for label in ("batched", "unbatched") if "concurrent" in modes else ():
                runs.setdefault(f"server_c{c}_{label}", []).append(
                    load(servers[label].port, jpegs, args.requests, c)
                )
            for kind, body in bodies.items() if "oip" in modes else ():
                timed(f"oip_{kind}_c1", plain, lambda b=body: infer(plain.port, b, args.requests))
            if "oip" in modes:
                timed("oip_triton_c1", plain, lambda: infer_triton(plain.port, x, args.requests))
            if base is not None:
                timed(
                    "oip_binary_c1_baseline", base, lambda: infer(base.port, bodies["binary"], args.requests)
                )
                timed("oip_triton_c1_baseline", base, lambda: infer_triton(base.port, x, args.requests))
            if "kserve" in modes:
                port = servers["kserve"].port
                runs.setdefault("kserve_oip_binary_c1", []).append(
                    infer(port, bodies["binary"], args.requests)
                )
                runs.setdefault("kserve_oip_triton_c1", []).append(infer_triton(port, x, args.requests))
            if "reload" in modes:
                runs.setdefault(f"reload_c{c}", []).append(
                    reload_under_load(servers["batched"].port, copies[r % 2], token, jpegs, args.requests, c)
                )
        if "sampling" in servers:
            samples = wait_drained(servers["sampling"])
            offer = offer_cost(work, jpegs)
    finally:
        for server in servers.values():
            server.stop()
        if moto is not None:
            moto.kill()
    res = {name: summarize(ms) for name, ms in runs.items()}
    round_p50 = {name: [float(np.median(r.latencies_ms)) for r in ms] for name, ms in runs.items()}
    for row in (r for r in res.values() if "server_share_p50" in r and "model" in res):
        # a model call slower in the server than alone is the server's cost too
        slower = max(0.0, row["server_model_p50"] - res["model"]["p50"])
        row["server_share_p50_with_slowdown"] = row["server_share_p50"] + slower

    c = args.concurrency
    pairs = {  # ratio: (numerator mode, denominator mode, figure)
        "latency_server_c1_over_direct": ("server_c1", "direct", "p50"),
        f"throughput_server_c{c}_over_direct": (f"server_c{c}_batched", "direct", "images_per_s"),
        "throughput_batched_over_unbatched": (
            f"server_c{c}_batched",
            f"server_c{c}_unbatched",
            "images_per_s",
        ),
        "latency_shadow_on_over_off": ("server_c1_shadow", "server_c1", "p50"),
        "latency_sampling_on_over_off": ("server_c1_sampling", "server_c1", "p50"),
        "latency_p90_sampling_on_over_off": ("server_c1_sampling", "server_c1", "p90"),
        "throughput_oip_binary_over_json": ("oip_binary_c1", "oip_json_c1", "images_per_s"),
        "latency_oip_binary_over_model": ("oip_binary_c1", "model", "p50"),
        "latency_oip_binary_over_baseline": ("oip_binary_c1", "oip_binary_c1_baseline", "p50"),
        "latency_oip_triton_over_baseline": ("oip_triton_c1", "oip_triton_c1_baseline", "p50"),
        "latency_kserve_over_server_oip_binary": ("kserve_oip_binary_c1", "oip_binary_c1", "p50"),
        "latency_kserve_over_server_oip_triton": ("kserve_oip_triton_c1", "oip_triton_c1", "p50"),
    }
    ratios = {name: res[a][f] / res[b][f] for name, (a, b, f) in pairs.items() if a in res and b in res}
    # what a server adds beyond the network: its p50 less the model's p50 and the client's own CPU
    overhead_ms = {
        f"{name}_server_ms": res[name]["p50"] - res["model"]["p50"] - res[name]["client_cpu_p50"]
        for name in (*OIP_MODES, "kserve_oip_binary_c1", "kserve_oip_triton_c1")
        if name in res and "model" in res
    }
    # the same, paired round by round (each round's p50s and client CPU): how much it moves
    share_rounds = {
        f"{name}_server_ms": [
            float(np.median(run.latencies_ms) - model_p50 - np.median(run.client_cpu_ms))
            for run, model_p50 in zip(runs[name], round_p50["model"], strict=True)
        ]
        for name in (*OIP_MODES, "kserve_oip_binary_c1", "kserve_oip_triton_c1")
        if name in runs and "model" in runs and runs[name][0].client_cpu_ms
    }
    splits = {
        name: {k: float(np.median([r[k] for r in rounds])) for k in rounds[0]}
        for name, rounds in inside.items()
    }
    # the share paired within each round on the server's own clock: latency - client CPU - model call
    own_clock = {
        name: [r["latency_ms"] - r["client_cpu_ms"] - r["model_call_ms"] for r in rounds]
        for name, rounds in inside.items()
    }
    failed_during_reload = 0  # load() exits on any non-200 answer, so reaching here means none
    meta = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
        "python": platform.python_version(),
        "onnxruntime": version("onnxruntime"),
        "uvicorn": version("uvicorn"),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(f"{'':28s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'images/s':>9s}")
    for name, row in res.items():
        print(f"{name:28s} {row['p50']:8.1f} {row['p90']:8.1f} {row['p99']:8.1f} {row['images_per_s']:9.1f}")
    for name, row in res.items():
        if "client_cpu_p50" in row:
            print(f"{name}: the client's own CPU {row['client_cpu_p50']:.2f} ms a request (p50)")
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    for name, value in overhead_ms.items():
        print(f"{name}: {value:.2f} ms beyond the model and the client (p50)")
        if name in share_rounds:
            print("    per round: " + ", ".join(f"{v:.2f}" for v in share_rounds[name]))
    for name, split in splits.items():
        print(
            f"{name} split (means a request, median of rounds): latency {split['latency_ms']:.2f} ms "
            f"= client CPU {split['client_cpu_ms']:.2f} + outside the app (uvicorn, loopback) "
            f"{split['outside_app_ms']:.2f} + the app's request {split['request_ms']:.2f} (its /metrics: "
            f"model call {split['model_call_ms']:.2f} + {split['app_beyond_model_ms']:.2f} in the app)"
        )
    for name, row in (kv for kv in res.items() if "server_share_p50" in kv[1]):
        print(
            f"{name}_server_ms paired request by request (latency - client CPU - the response's "
            f"Server-Timing model time): p50 {row['server_share_p50']:.2f} ms (its model calls' p50 "
            f"{row['server_model_p50']:.2f} ms)"
        )
        if "server_share_p50_with_slowdown" in row:
            slower = row["server_share_p50_with_slowdown"] - row["server_share_p50"]
            print(
                f"    with the model's slowdown in the server ({slower:.2f} ms against the network alone, "
                f"{res['model']['p50']:.2f} ms): {row['server_share_p50_with_slowdown']:.2f} ms"
            )
    for name, shares in own_clock.items():
        print(
            f"{name}_server_ms on the server's model clock (latency - client CPU - its model call, means "
            f"a round): median {np.median(shares):.2f} ms; per round " + ", ".join(f"{v:.2f}" for v in shares)
        )
    if "reload" in modes:
        print(f"reloads under load: {args.rounds}, failed requests during them: {failed_during_reload}")
    if samples:
        print("payload samples: " + ", ".join(f"{k} {v:.0f}" for k, v in samples.items()))
    if "server_c1" in round_p50 and "server_c1_sampling" in round_p50:
        per_round = [
            a / b for a, b in zip(round_p50["server_c1_sampling"], round_p50["server_c1"], strict=True)
        ]
        print("sampling on / off p50, per round: " + ", ".join(f"{v:.2f}" for v in per_round))
    if offer:
        p50, p99 = offer["p50_us"], offer["p99_us"]
        print(f"PayloadSampler.offer on the request path: p50 {p50:.1f} us, p99 {p99:.1f} us")
    print(f"load average (1, 5, 15 min) at the start {load_start}, at the end {os.getloadavg()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"meta": meta, "results": res, "ratios": ratios, "reload_failed_requests": failed_during_reload,
               "payload_samples": samples, "round_p50": round_p50, "offer": offer,
               "server_overhead_ms": overhead_ms,
               "server_overhead_ms_per_round": share_rounds,
               "oip_binary_inside": splits.get("oip_binary_c1", {}), "oip_inside": splits,
               "server_ms_own_clock_per_round": own_clock}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
