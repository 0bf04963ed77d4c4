"""Submit a training job and follow it to its end: conditions, node 0's log, timeout, cancel.

Two job kinds, one loop: the Training Operator's ``PyTorchJob`` (``kubeflow.org/v1``) and
Kubeflow Trainer v2's ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``), each described by a
:class:`JobKind` (API path, the condition that means success, where node 0's log is). The
watch loop talks to the cluster only through a :class:`JobApi` (get/delete/logs), so it runs
the same against the Kubernetes API (:class:`KubernetesJobApi`) and against recorded status
sequences in tests::

    api = KubernetesJobApi.connect("detpipe", "train-yolo12n-1a2b3c4d", TRAINJOB)
    api.create(manifest)
    state = watch(api, timeout_s=72 * 3600, queue_timeout_s=24 * 3600)   # Succeeded, or raises;
                                                  # deletes on timeout/Ctrl-C

The Training Operator keeps ``status.conditions`` (types Created, Running, Restarting,
Succeeded, Failed, Suspended), updating a type in place and moving the newest to the end;
Trainer v2 writes Suspended, Complete and Failed (``pkg/apis/trainer/v1alpha1/
trainjob_types.go``) and reports running pods in ``status.jobsStatus``. The job's phase is
Succeeded or Failed once one of those is True, else the last True one.

Queued jobs (Kueue): a job created with the ``kueue.x-k8s.io/queue-name`` label and suspended
(``spec.runPolicy.suspend`` of a PyTorchJob, ``spec.suspend`` of a TrainJob) waits until Kueue
admits it, which it does by unsuspending it (and suspends it again to preempt it). While
suspended the job is *waiting* (phase Queued, or Suspended until the operator notices the
resume): the wait has its own limit (``queue_timeout_s``, each wait afresh), and the run's
``timeout_s`` counts only the time the job is admitted, summed over admissions. Both
operators likewise restart ``activeDeadlineSeconds`` when a job is resumed.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from detpipe.errors import DetpipeError, InvalidInput, NotFound, Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobKind:
    """One custom resource the launchers create, and how to follow it.

    Attributes:
        kind, group, version, plural: the resource's API identity.
        succeeded: the condition type that means the job finished well.
        container: the training container's name in its pods.
        node0_selector: label selector of the pod running global rank 0 (``{name}``: the job).
        suspend: the path of the job's ``suspend`` flag (what Kueue flips on admission).
    """

    kind: str
    group: str
    version: str
    plural: str
    succeeded: str
    container: str
    node0_selector: str
    suspend: tuple[str, ...]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


PYTORCHJOB = JobKind(
    kind="PyTorchJob",
    group="kubeflow.org",
    version="v1",
    plural="pytorchjobs",
    succeeded="Succeeded",
    container="pytorch",  # the Training Operator requires this name
    node0_selector="training.kubeflow.org/job-name={name},training.kubeflow.org/replica-type=master",
    suspend=("spec", "runPolicy", "suspend"),
)
TRAINJOB = JobKind(
    kind="TrainJob",
    group="trainer.kubeflow.org",
    version="v1alpha1",
    plural="trainjobs",
    succeeded="Complete",
    container="node",  # the trainer container of the torch-distributed ClusterTrainingRuntime
    # JobSet labels its pods; node 0 is completion index 0 of the replicated job "node".
    node0_selector="jobset.sigs.k8s.io/jobset-name={name},jobset.sigs.k8s.io/replicatedjob-name=node,"
    "batch.kubernetes.io/job-completion-index=0",
    suspend=("spec", "suspend"),
)
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
"""The label that hands a job to Kueue: the name of a LocalQueue in the job's namespace."""
RUN_LABEL = "detpipe.io/run"
"""The run a job belongs to (its first attempt's name): every attempt of one run carries it."""
ATTEMPT_LABEL = "detpipe.io/attempt"
"""Which attempt of its run a job is: 1, 2, ... (see :mod:`detpipe.train.attempts`)."""


class JobFailed(DetpipeError):
    """The job ended Failed (the reason and message are the operator's)."""


class JobExists(InvalidInput):
    """A job of that name exists already (the API answered 409)."""


class JobTimeout(DetpipeError):
    """The job did not finish in time, or was not admitted from its queue in time, and was deleted."""


class Phase(enum.StrEnum):
    """Where a job stands."""

    PENDING = "Pending"  # no condition yet: the operator has not picked it up
    QUEUED = "Queued"  # suspended in its spec: waiting for Kueue (or whoever) to unsuspend it
    CREATED = "Created"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobState:
    """A job's phase with the operator's reason and message for it."""

    phase: Phase
    reason: str = ""
    message: str = ""

    @property
    def done(self) -> bool:
        return self.phase in (Phase.SUCCEEDED, Phase.FAILED)

    @property
    def waiting(self) -> bool:
        """Not admitted: suspended, so no pod runs (a queued job, or one Kueue preempted)."""
        return self.phase in (Phase.QUEUED, Phase.SUSPENDED)


class JobApi(Protocol):
    """What the watch loop needs from a cluster, for one job."""

    name: str
    kind: JobKind

    def create(self, manifest: Mapping[str, Any]) -> None:
        """Submit the job (the launchers call it; the watch loop does not)."""
        ...

    def get(self) -> Mapping[str, Any]:
        """The job object; raises NotFound when it is gone."""
        ...

    def delete(self) -> None:
        """Delete the job (and its pods)."""
        ...

    def logs(self) -> list[str]:
        """Node 0's log lines not returned before (``[]`` while there is no container)."""
        ...

    def runs(self, run: str) -> list[Mapping[str, Any]]:
        """The jobs of this kind and namespace labelled ``detpipe.io/run=<run>`` (every attempt)."""
        ...

    def renamed(self, name: str) -> JobApi:
        """The same cluster access for the job ``name``."""
        ...


def suspended(job: Mapping[str, Any], kind: JobKind) -> bool:
    """Whether the job's spec asks for it to be suspended (``kind.suspend``)."""
    node: Any = job
    for key in kind.suspend:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node is True


def queue_name(job: Mapping[str, Any]) -> str:
    """The Kueue LocalQueue a job was submitted to ("" for none)."""
    return str(((job.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL) or "")


def job_state(job: Mapping[str, Any], kind: JobKind = PYTORCHJOB) -> JobState:
    """The phase of a job object from its ``status.conditions`` (and ``jobsStatus``)."""
    status = job.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if str(c.get("status")) == "True"]
    by_type = {c.get("type"): c for c in conditions}
    terminal = {"Failed": Phase.FAILED, kind.succeeded: Phase.SUCCEEDED}
    for type_, phase in terminal.items():
        if type_ in by_type:
            return _state(phase, by_type[type_])
    if suspended(job, kind):
        queue = queue_name(job)
        return JobState(Phase.QUEUED, f"queue {queue}" if queue else "suspended")
    if not conditions:
        running = any(int(j.get("active") or 0) > 0 for j in status.get("jobsStatus") or [])
        return JobState(Phase.RUNNING if running else Phase.PENDING)
    current = conditions[-1]
    try:
        phase = Phase(current.get("type"))
    except ValueError:
        phase = Phase.PENDING
    if phase is Phase.SUCCEEDED:  # the other kind's word for success: not this job's
        phase = Phase.PENDING
    return _state(phase, current)


def _state(phase: Phase, condition: Mapping[str, Any]) -> JobState:
    return JobState(phase, str(condition.get("reason") or ""), str(condition.get("message") or ""))


def watch(
    api: JobApi,
    *,
    timeout_s: float,
    queue_timeout_s: float | None = None,
    poll_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    emit: Callable[[str], None] | None = None,
) -> JobState:
    """Follow the job until it succeeds; stream the master's log meanwhile.

    Args:
        api: the job's cluster access.
        timeout_s: delete the job and fail once it has been admitted (not waiting) this long.
        queue_timeout_s: delete the job and fail once it has waited this long in one go
            (queued or suspended; ``None``: wait as long as it takes).
        poll_s: seconds between status polls.
        clock, sleep: time sources (tests pass fakes).
        emit: where log lines go (default: stderr; stdout is kept for the summary).

    Returns:
        The final Succeeded state.

    Raises:
        JobFailed: the job Failed (reason: message from the operator), or vanished.
        JobTimeout: ``timeout_s`` or ``queue_timeout_s`` passed; the job was deleted.
        KeyboardInterrupt: Ctrl-C or SIGTERM; the job was deleted.
    """
    emit = emit or (lambda line: print(line, file=sys.stderr))
    kind = api.kind
    what = f"{kind.kind} {api.name}"
    last: JobState | None = None
    timers = _Timers()
    with _sigterm_as_interrupt():
        try:
            while True:
                try:
                    state = job_state(api.get(), kind)
                except NotFound:
                    raise JobFailed(f"{what} disappeared (deleted by someone else?)") from None
                now = clock()
                waited = timers.observe(now, state.waiting)
                if waited is not None:
                    log.info("%s: admitted after %.0f s waiting", what, waited)
                if state != last:
                    log.info(
                        "%s: %s%s",
                        what,
                        state.phase,
                        f" ({state.reason})" if state.reason else "",
                    )
                    last = state
                for line in api.logs():
                    emit(line)
                if state.phase is Phase.SUCCEEDED:
                    return state
                if state.phase is Phase.FAILED:
                    why = ": ".join(x for x in (state.reason, state.message) if x) or "no reason given"
                    raise JobFailed(f"{what} failed: {why}")
                if queue_timeout_s and timers.waited(now) >= queue_timeout_s:
                    log.warning("%s: not admitted after %.0f s, deleting it", what, queue_timeout_s)
                    api.delete()
                    raise JobTimeout(
                        f"{what} waited {queue_timeout_s:.0f} s ({state.reason or state.phase}) without "
                        "being admitted and was deleted"
                    )
                if timers.ran_s >= timeout_s:
                    log.warning("%s: no result after %.0f s admitted, deleting it", what, timeout_s)
                    api.delete()
                    raise JobTimeout(f"{what} timed out after {timeout_s:.0f} s and was deleted")
                sleep(poll_s)
        except KeyboardInterrupt:
            log.warning("cancelled: deleting %s", what)
            api.delete()
            raise


@dataclass
class _Timers:
    """From the polls: the time admitted (summed over admissions) and when the current wait began."""

    ran_s: float = 0.0
    waiting_since: float | None = None
    _last: tuple[float, bool] | None = None  # (time, waiting) at the previous poll

    def observe(self, now: float, waiting: bool) -> float | None:
        """Account the time since the previous poll; the wait's length when this poll ends one."""
        if self._last is not None and not self._last[1]:
            self.ran_s += now - self._last[0]
        self._last = (now, waiting)
        if waiting:
            if self.waiting_since is None:
                self.waiting_since = now
            return None
        began, self.waiting_since = self.waiting_since, None
        return None if began is None else now - began

    def waited(self, now: float) -> float:
        """Seconds the current wait has lasted (0 while admitted)."""
        return 0.0 if self.waiting_since is None else now - self.waiting_since


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a cancelled pipeline step) like Ctrl-C while watching, so the job is deleted."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class KubernetesJobApi:
    """:class:`JobApi` over the Kubernetes API (kubernetes client), for one job of ``kind``."""

    def __init__(self, namespace: str, name: str, custom: Any, core: Any, kind: JobKind = PYTORCHJOB) -> None:
        self.namespace, self.name, self.kind = namespace, name, kind
        self._custom, self._core = custom, core
        self._last_log: datetime | None = None

    @classmethod
    def connect(cls, namespace: str, name: str, kind: JobKind = PYTORCHJOB) -> KubernetesJobApi:
        """Use the in-cluster service account, else the local kubeconfig.

        Raises:
            Unavailable: no cluster configuration here.
        """
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config()
            except (config.ConfigException, FileNotFoundError) as e:
                raise Unavailable(
                    f"no Kubernetes cluster configured (in-cluster or kubeconfig): {e}"
                ) from None
        return cls(namespace, name, client.CustomObjectsApi(), client.CoreV1Api(), kind)

    def create(self, manifest: Mapping[str, Any]) -> None:
        """Submit the job.

        Raises:
            InvalidInput: a job of that name exists, or the API rejected the manifest.
        """
        from kubernetes.client.exceptions import ApiException

        try:
            self._custom.create_namespaced_custom_object(
                group=self.kind.group,
                version=self.kind.version,
                namespace=self.namespace,
                plural=self.kind.plural,
                body=dict(manifest),
            )
        except ApiException as e:
            if e.status == 409:
                raise JobExists(
                    f"{self.kind.kind} {self.namespace}/{self.name} exists: pick another --job-name"
                ) from None
            raise InvalidInput(
                f"{self.kind.kind} {self.name} rejected ({e.status} {e.reason}): {_api_message(e)}"
            ) from None
        log.info("submitted %s %s/%s", self.kind.kind, self.namespace, self.name)

    def get(self) -> Mapping[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._custom.get_namespaced_custom_object(
                group=self.kind.group,
                version=self.kind.version,
                namespace=self.namespace,
                plural=self.kind.plural,
                name=self.name,
            )
        except ApiException as e:
            if e.status == 404:
                raise NotFound(f"{self.kind.kind} {self.namespace}/{self.name} not found") from None
            raise

    def runs(self, run: str) -> list[Mapping[str, Any]]:
        """The jobs of this kind in the namespace labelled ``detpipe.io/run=<run>``."""
        listed = self._custom.list_namespaced_custom_object(
            group=self.kind.group,
            version=self.kind.version,
            namespace=self.namespace,
            plural=self.kind.plural,
            label_selector=f"{RUN_LABEL}={run}",
        )
        return list(listed.get("items") or [])

    def renamed(self, name: str) -> KubernetesJobApi:
        """The same clients, for the job ``name`` (its log followed from its start)."""
        return KubernetesJobApi(self.namespace, name, self._custom, self._core, self.kind)

    def delete(self) -> None:
        from kubernetes.client.exceptions import ApiException

        with contextlib.suppress(ApiException):
            self._custom.delete_namespaced_custom_object(
                group=self.kind.group,
                version=self.kind.version,
                namespace=self.namespace,
                plural=self.kind.plural,
                name=self.name,
                propagation_policy="Foreground",
            )

    def logs(self) -> list[str]:
        """New lines of node 0's training container log (by timestamp, so restarts are followed)."""
        from kubernetes.client.exceptions import ApiException

        try:
            pods = self._core.list_namespaced_pod(
                self.namespace, label_selector=self.kind.node0_selector.format(name=self.name)
            ).items
            if not pods:
                return []
            since = None
            if self._last_log is not None:
                since = max(int((datetime.now(UTC) - self._last_log).total_seconds()) + 2, 1)
            text = self._core.read_namespaced_pod_log(
                pods[0].metadata.name,
                self.namespace,
                container=self.kind.container,
                timestamps=True,
                since_seconds=since,
            )
        except ApiException:  # container not started yet, or gone between the calls
            return []
        lines = []
        for raw in text.splitlines():
            stamp, _, line = raw.partition(" ")
            try:
                when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                lines.append(raw)
                continue
            if self._last_log is None or when > self._last_log:
                self._last_log = when
                lines.append(line)
        return lines


def _api_message(e: Any) -> str:
    import json

    try:
        return str(json.loads(e.body).get("message", ""))[:300]
    except (TypeError, ValueError, AttributeError):
        return str(e.reason)
