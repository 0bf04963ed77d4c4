"""The latency benchmark step over every exported format."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def bench_op(
    exported: Input[Model],
    bench: Output[Artifact],
    metrics: Output[Metrics],
    batch: int = 1,
    warmup: int = 10,
    iters: int = 100,
    threads: int = 0,
    device: str = "auto",
) -> None:
    """Benchmark each exported model (infer-only and end-to-end): percentiles, FPS, power on Jetson.

    ``device`` (``auto``: GPU 0 when present) picks the backends: on a GPU, onnxruntime's CUDA
    provider, TensorRT for engines. Every result records what really ran (the providers the
    onnxruntime session uses, the TensorRT device), and publish files each result under the
    device class it ran on. The artifact holds ``bench.json``, ``bench.md`` and ``bench.png``;
    p50/p99 and images/s of each model are logged as metrics, keyed by format, backend and
    the device it ran on.
    """
    import time
    from pathlib import Path

    from detpipe.bench.core import Schedule
    from detpipe.bench.run import BenchConfig, run_bench

    start = time.perf_counter()
    out = Path(bench.path)
    out.mkdir(parents=True, exist_ok=True)
    cfg = BenchConfig(
        models=(Path(exported.path),),
        out=out / "bench.json",
        batch=batch,
        schedule=Schedule(warmup_iters=warmup, iters=iters),
        threads=threads or None,
        device=device,
    )
    report = run_bench(cfg)
    for row in report["results"]:
        if row["status"] != "ok":
            continue
        for mode in ("infer", "e2e"):
            where = row["ran_on"]["device"].replace(":", "")
            key = f"{row['format']}_{row['backend']}_{where}_{mode}".replace(".", "_").replace("-", "_")
            metrics.log_metric(f"{key}_p50_ms", row[mode]["p50_ms"])
            metrics.log_metric(f"{key}_images_per_s", row[mode]["throughput_ips"])
    metrics.log_metric("wall_time_s", round(time.perf_counter() - start, 3))
