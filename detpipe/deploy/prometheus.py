"""Run the canary's checks against a Prometheus server (its HTTP API, ``/api/v1/query``).

What an AnalysisRun measures, on demand: ``detpipe deploy status --prometheus URL`` and the
tests against a real Prometheus use it::

    for result in evaluate("http://127.0.0.1:9090", checks("yolov8n-coco", "0.2.0")):
        print(result["name"], result["value"], result["verdict"])
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

from detpipe.deploy.queries import Check
from detpipe.errors import InvalidInput, Unavailable


def query(url: str, promql: str, timeout: float = 10.0) -> float:
    """The first sample of an instant query; NaN when the result is empty (no series yet).

    Raises:
        InvalidInput: Prometheus rejected the query (its error message).
        Unavailable: Prometheus is unreachable.
    """
    params = urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query?{params}", timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read()).get("error", e.reason)
        except ValueError:
            reason = e.reason
        raise InvalidInput(f"Prometheus rejected the query ({e.code}): {reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise Unavailable(f"Prometheus at {url} unreachable: {e}") from None
    data = body.get("data") or {}
    result: list[dict[str, Any]] = data.get("result") or []
    if data.get("resultType") == "scalar":
        return float(result[1])
    return float(result[0]["value"][1]) if result else math.nan


def evaluate(url: str, checks: Iterable[Check]) -> list[dict[str, Any]]:
    """Each check measured once: name, value, limit and verdict (pass, fail, or inconclusive)."""
    out = []
    for check in checks:
        value = query(url, check.query)
        verdict = check.passes(value)
        out.append(
            {
                "name": check.name,
                "value": None if math.isnan(value) else value,
                "limit": check.limit,
                "verdict": "inconclusive" if verdict is None else "pass" if verdict else "fail",
            }
        )
    return out
