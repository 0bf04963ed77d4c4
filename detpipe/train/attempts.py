"""Which job a launch uses: the run's live job (adopted) or a new attempt with its own name.

A run's jobs carry ``detpipe.io/run=<run>`` (the first attempt's name: derived from the run's
flags, or ``--job-name``) and ``detpipe.io/attempt=<n>``, and record the digest of their spec
in the annotation ``detpipe.io/spec-digest``. A launch (``detpipe train --launcher ...``, or
a Kubeflow retry of the pipeline's train step, which repeats the step with the same inputs
and so the same run) looks at the run's latest attempt:

* none: attempt 1, named ``<run>``;
* live (pending, queued, running) or succeeded, with the same spec: adopted, so a retried
  step follows the job its killed predecessor left running, instead of failing on the
  name or training a second copy;
* live with another spec: refused (exit 2), someone else's run holds the name;
* failed, or being deleted (timed out, cancelled): attempt ``n + 1``, named
  ``<run>-a<n+1>``; it resumes from the same ``--resume`` mirror.

A job of that name that carries no run label (made by hand, or by an older detpipe) is never
adopted: creating over it fails with the API's 409 as before::

    claim = claim_job(api, "train-yolo12n-1a2b3c4d", spec_digest(manifest))
    # Claim(name='train-yolo12n-1a2b3c4d-a2', attempt=2, adopted=None) after a failed attempt 1
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.train.jobwatch import ATTEMPT_LABEL, JobApi, Phase, job_state
from detpipe.train.pytorchjob import MAX_NAME

DIGEST_ANNOTATION = "detpipe.io/spec-digest"


@dataclass(frozen=True)
class Claim:
    """The job a launch uses.

    Attributes:
        name: the job's name.
        attempt: its attempt number (1 for the run's first job).
        adopted: the existing job object when it is adopted; ``None``: create ``name``.
    """

    name: str
    attempt: int
    adopted: Mapping[str, Any] | None = None


def spec_digest(manifest: Mapping[str, Any]) -> str:
    """16 hex digits of the manifest's ``spec``: equal for the same run and job shape."""
    text = json.dumps(manifest["spec"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def attempt_name(run: str, attempt: int) -> str:
    """``run`` for attempt 1, else ``<run>-a<attempt>`` (``run`` cut to fit :data:`MAX_NAME`)."""
    if attempt == 1:
        return run
    suffix = f"-a{attempt}"
    return run[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def claim_job(api: JobApi, run: str, digest: str) -> Claim:
    """Adopt the run's latest attempt if it lives (or succeeded), else name the next one.

    Raises:
        InvalidInput: the latest attempt is live but its spec differs (another run's job).
    """
    jobs = sorted(api.runs(run), key=_attempt)
    if not jobs:
        return Claim(run, 1)
    latest = jobs[-1]
    number, name = _attempt(latest), str(latest["metadata"]["name"])
    if _over(latest, api):
        return Claim(attempt_name(run, number + 1), number + 1)
    theirs = (latest["metadata"].get("annotations") or {}).get(DIGEST_ANNOTATION)
    if theirs != digest:
        raise InvalidInput(
            f"{api.kind.kind} {name} (run {run}, attempt {number}) is still there with other "
            "settings: wait for it, delete it, or pick another --job-name"
        )
    return Claim(name, number, latest)


def _attempt(job: Mapping[str, Any]) -> int:
    try:
        return int(((job.get("metadata") or {}).get("labels") or {}).get(ATTEMPT_LABEL, 1))
    except ValueError:
        return 1


def _over(job: Mapping[str, Any], api: JobApi) -> bool:
    """Failed, or on its way out (deleted after a timeout or a cancel)."""
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return True
    return job_state(job, api.kind).phase is Phase.FAILED
