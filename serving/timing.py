"""The ``Server-Timing`` header of inference answers (W3C Server Timing): its one format.

``inference;dur=9.271``: the milliseconds of the model calls that the request's images were
in, as ``detpipe_inference_duration_seconds`` summed them. A client's latency less this and
its own CPU is the share of the server and the network (``benchmarks/serve.py`` pairs it so).
"""

from __future__ import annotations

HEADER = "Server-Timing"
METRIC = "inference"


def server_timing(model_seconds: float) -> str:
    """The header's value for ``model_seconds`` of model calls."""
    return f"{METRIC};dur={model_seconds * 1000:.3f}"


def model_ms(value: str | None) -> float | None:
    """A header value -> its model milliseconds; None when absent or another server's."""
    name, sep, dur = (value or "").partition(";dur=")
    if name != METRIC or not sep:
        return None
    try:
        return float(dur)
    except ValueError:
        return None
