"""apply / promote / rollback / status / --auto of a KServe canary against the loopback API.

:class:`KServeFake` is tests/deploy/fake_kube.py's recorded API plus KServe's Serverless
reconcile of an InferenceService, done on every read, with the rules of kserve/kserve v0.20.0:
a new revision ``<name>-predictor-NNNNN`` for each change of the predictor other than
``canaryTrafficPercent``; traffic as ``ksvc_reconciler.go`` asks Knative for it
(``canaryTrafficPercent`` to the latest ready revision, the rest to ``latestRolledoutRevision``
tagged ``prev``, or 100 % to the latest without a rolled-out one); rolled-out revisions as
``InferenceServiceStatus.PropagateStatus`` tracks them; the conditions KServe sets. Every
status it writes validates against the vendored CRD.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config

from detpipe.cli.main import main
from detpipe.deploy import kserve_actions as ka
from detpipe.deploy.cluster import Kube, object_path
from detpipe.deploy.config import CanaryConfig
from detpipe.deploy.kserve_auto import judge
from detpipe.deploy.queries import checks

from . import crd_schema
from .fake_kube import FakeKube, serve

ROOT = Path(__file__).resolve().parents[2]
NS, NAME = "detpipe", "detpipe-serve"
URI = "s3://detpipe/models/yolov8n-coco/0.2.0"
NEXT = "s3://detpipe/models/yolov8n-coco/0.3.0"
ISVC = object_path("InferenceService", NS, NAME)
T0 = "2026-12-06T20:00:00Z"


@dataclass
class _Revisions:
    """What KServe and Knative keep for one InferenceService."""

    templates: list[str] = field(default_factory=list)  # predictor (less the percentage) per revision
    polls: dict[str, int] = field(default_factory=dict)  # reconciles each revision has been through
    ready: str = ""
    rolled: str = ""
    previous_rolled: str = ""


@dataclass
class KServeFake(FakeKube):
    """The recorded API plus KServe's reconcile of InferenceServices on every read."""

    ready_after: int = 1  # reconciles before a new revision is ready
    broken: set[str] = field(default_factory=set)  # storageUris whose revision fails
    standard: bool = False  # status.deploymentMode Standard
    states: dict[str, _Revisions] = field(default_factory=dict)

    def handler(self):  # the recorded API's handler, reconciling InferenceServices on reads
        base, kserve = super().handler(), self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:  # noqa: N802 (BaseHTTPRequestHandler's name)
                path = self.path.split("?")[0]
                if "/inferenceservices/" in path and path in kserve.objects:
                    with kserve._lock:
                        kserve.reconcile(path)
                super().do_GET()

        return Handler

    def reconcile(self, path: str) -> None:
        """One reconcile; the object is replaced, never changed in place (reads run concurrently)."""
        isvc = copy.deepcopy(self.objects[path])
        name = isvc["metadata"]["name"]
        predictor = isvc["spec"]["predictor"]
        st = self.states.setdefault(path, _Revisions())
        template = json.dumps(
            {k: v for k, v in predictor.items() if k != "canaryTrafficPercent"}, sort_keys=True
        )
        if not st.templates or st.templates[-1] != template:
            st.templates.append(template)
            isvc["metadata"]["generation"] = isvc["metadata"].get("generation", 0) + 1
        latest = f"{name}-predictor-{len(st.templates):05d}"
        uri = predictor["model"]["storageUri"]
        st.polls[latest] = st.polls.get(latest, 0) + 1
        if uri not in self.broken and st.polls[latest] > self.ready_after:
            st.ready = latest
        # ksvc_reconciler.go: the traffic KServe asks Knative for
        pct = predictor.get("canaryTrafficPercent")
        traffic: list[dict[str, Any]] = []
        if st.ready:
            if pct is not None and st.rolled:
                traffic.append({"latestRevision": True, "percent": pct, "revisionName": st.ready})
                if pct < 100:
                    prev = f"http://prev-{name}-predictor.{NS}.example.com"
                    traffic.append({"latestRevision": False, "percent": 100 - pct, "revisionName": st.rolled,
                                    "tag": "prev", "url": prev})  # fmt: skip
            else:
                traffic.append({"latestRevision": True, "percent": 100, "revisionName": st.ready})
        # InferenceServiceStatus.PropagateStatus: which revision is rolled out
        by_revision: dict[str, int] = {}
        for t in traffic:
            by_revision[t["revisionName"]] = by_revision.get(t["revisionName"], 0) + t["percent"]
        for t in traffic:
            if t["revisionName"] == st.ready and t["latestRevision"]:
                if st.rolled != st.ready:
                    if t["percent"] == 100:
                        st.previous_rolled, st.rolled = st.rolled, st.ready
                elif (  # rolled out to 100 %, then rolled back: KServe takes the previous one again
                    st.ready == latest
                    and t["percent"] < 100
                    and st.previous_rolled
                    and by_revision.get(t["revisionName"]) == 100
                ):
                    st.rolled = st.previous_rolled
        isvc["status"] = self._status(isvc, st, latest, traffic, failed=uri in self.broken)
        self.objects[path] = isvc

    def _status(
        self, isvc: dict, st: _Revisions, latest: str, traffic: list[dict], *, failed: bool
    ) -> dict[str, Any]:
        name = isvc["metadata"]["name"]

        def cond(kind: str, ok: bool | None, reason: str = "", message: str = "") -> dict[str, Any]:
            out = {"type": kind, "status": {True: "True", False: "False", None: "Unknown"}[ok],
                   "lastTransitionTime": T0}  # fmt: skip
            if ok is not True:
                out.update(reason=reason, message=message, severity="Info" if kind == "Stopped" else "")
                out = {k: v for k, v in out.items() if v != ""}
            return out

        config_ok = True if st.ready == latest else (False if failed else None)
        why = ("RevisionFailed", f'Revision "{latest}" failed with message: Container failed with: '
               "detpipe serve: error: the release signature does not verify.") if failed else (
               "RevisionMissing", "Configuration is waiting for a Revision to become ready.")  # fmt: skip
        routes_ok = bool(st.ready)
        comp: dict[str, Any] = {"latestCreatedRevision": latest}
        if st.ready:
            comp["latestReadyRevision"] = st.ready
        if st.rolled:
            comp["latestRolledoutRevision"] = st.rolled
        if st.previous_rolled:
            comp["previousRolledoutRevision"] = st.previous_rolled
        if traffic:
            comp["traffic"] = traffic
            comp["url"] = f"http://{name}-predictor.{NS}.example.com"
            comp["address"] = {"url": f"http://{name}-predictor.{NS}.svc.cluster.local"}
        conditions = [
            cond("IngressReady", routes_ok, "IngressNotConfigured"),
            cond("LatestDeploymentReady", config_ok, *(why if not config_ok else ())),
            cond("PredictorConfigurationReady", config_ok, *(why if not config_ok else ())),
            cond("PredictorReady", config_ok and routes_ok, *(why if not config_ok else ("RoutesNotReady",))),
            cond("PredictorRouteReady", routes_ok, "RoutesNotReady"),
            cond("Ready", config_ok and routes_ok, "PredictorNotReady"),
            cond("RoutesReady", routes_ok, "PredictorRouteReady not ready"),
        ]
        status: dict[str, Any] = {
            "observedGeneration": len(st.templates) + 1,  # the ksvc's generation, as KServe copies it
            "conditions": conditions,
            "components": {"predictor": comp},
            "deploymentMode": "Standard" if self.standard else "Serverless",
            "servingRuntimeName": "detpipe",
            "modelStatus": {
                "transitionStatus": "UpToDate" if st.ready == latest else "InProgress",
                "states": {
                    "activeModelState": "Loaded" if st.ready else "Pending",
                    "targetModelState": "Loaded",
                },
                "copies": {"failedCopies": 0, "totalCopies": 1},
            },
        }
        if routes_ok:
            status["url"] = f"http://{name}.{NS}.example.com"
            status["address"] = {"url": f"http://{name}.{NS}.svc.cluster.local"}
        return status

    def isvc(self) -> dict[str, Any]:
        """The InferenceService as a client reads it (reconciled)."""
        with self._lock:
            self.reconcile(ISVC)
        return copy.deepcopy(self.objects[ISVC])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KServeFake, Kube, Path]]:
    kubeconfig = tmp_path / "kubeconfig"
    with serve(KServeFake(), kubeconfig) as kube:
        yield kube, Kube(config.new_client_from_config(config_file=str(kubeconfig))), kubeconfig


def _cli(kubeconfig: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["deploy", *args, "--kubeconfig", str(kubeconfig)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _canary(kubeconfig: Path, capsys, uri: str, *flags: str) -> tuple[int, str, str]:
    return _cli(kubeconfig, capsys, "canary", "--model-uri", uri, "--strategy", "kserve", *flags)


def _status(kubeconfig: Path, capsys) -> dict:
    code, out, err = _cli(kubeconfig, capsys, "status", "--strategy", "kserve", "--json")
    assert code == 0, err
    return json.loads(out)


def _released(kube: KServeFake, kubeconfig: Path, capsys) -> None:
    """0.2.0 rolled out: KServe gave its first revision all traffic."""
    assert _canary(kubeconfig, capsys, URI)[0] == 0
    for _ in range(3):
        kube.isvc()
    assert ka.revisions(kube.isvc()).rolled_out


def test_canary_applies_the_objects_server_side_and_kserve_gives_a_first_revision_all_traffic(
    cluster, capsys
) -> None:
    kube, _, kubeconfig = cluster
    code, out, err = _canary(kubeconfig, capsys, URI)
    assert code == 0, err
    docs = ka.ks.render_kserve(CanaryConfig(URI, strategy="kserve"))
    applies = [(p, b) for p, t, b in kube.patches() if t == "application/apply-patch+yaml"]
    assert applies == [(object_path(d["kind"], NS, d["metadata"]["name"]), d) for d in docs]
    assert all(
        r.query == {"fieldManager": "detpipe", "force": "true"} for r in kube.requests if r.method == "PATCH"
    )
    assert out.splitlines()[-1] == "canary yolov8n-coco 0.2.0: kserve, steps 10,50,100"
    status = _status(kubeconfig, capsys)
    assert (status["phase"], status["canary_weight"]) == ("Progressing", 0)  # the revision is starting
    status = _status(kubeconfig, capsys)
    assert (status["phase"], status["canary_weight"], status["model_uri"]) == ("Healthy", 100, URI)
    assert (
        status["details"]["canary_revision"]
        == status["details"]["stable_revision"]
        == "detpipe-serve-predictor-00001"
    )


def test_promote_walks_the_steps_then_removes_the_percentage(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    _released(kube, kubeconfig, capsys)
    assert _canary(kubeconfig, capsys, NEXT)[0] == 0
    kube.isvc(), kube.isvc()
    status = _status(kubeconfig, capsys)
    assert (status["phase"], status["canary_weight"], status["step"], status["canary_version"]) == (
        "Paused", 10, "1/3", "0.3.0")  # fmt: skip
    assert status["details"]["traffic"] == [
        {"revisionName": "detpipe-serve-predictor-00002", "percent": 10, "latestRevision": True},
        {
            "revisionName": "detpipe-serve-predictor-00001",
            "percent": 90,
            "latestRevision": False,
            "tag": "prev",
        },
    ]
    before = len(kube.patches())
    code, out, _ = _cli(kubeconfig, capsys, "promote", "--strategy", "kserve")
    assert code == 0 and re.search(r"^canary weight +50%$", out, re.M)
    assert kube.patches()[before:] == [
        (ISVC, "application/merge-patch+json", {"spec": {"predictor": {"canaryTrafficPercent": 50}}})
    ]
    assert _cli(kubeconfig, capsys, "promote", "--strategy", "kserve")[0] == 0
    assert kube.patches()[-1][2] == {"spec": {"predictor": {"canaryTrafficPercent": None}}}
    isvc = kube.isvc()
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    comp = isvc["status"]["components"]["predictor"]
    assert (comp["latestRolledoutRevision"], comp["previousRolledoutRevision"]) == (
        "detpipe-serve-predictor-00002", "detpipe-serve-predictor-00001")  # fmt: skip
    assert _status(kubeconfig, capsys)["phase"] == "Healthy"
    # applying the promoted release again splits nothing: its absent percentage is kept
    assert _canary(kubeconfig, capsys, NEXT)[0] == 0
    assert "canaryTrafficPercent" not in kube.isvc()["spec"]["predictor"]
    assert _status(kubeconfig, capsys)["canary_weight"] == 100


def test_reapplying_a_running_canary_keeps_its_step(cluster, capsys) -> None:
    kube, client, kubeconfig = cluster
    _released(kube, kubeconfig, capsys)
    assert _canary(kubeconfig, capsys, NEXT)[0] == 0
    ka.promote_kserve(client, NS, NAME)
    assert _canary(kubeconfig, capsys, NEXT)[0] == 0
    assert kube.isvc()["spec"]["predictor"]["canaryTrafficPercent"] == 50


def test_rollback_sets_zero_and_kserve_sends_everything_to_the_rolled_out_revision(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    _released(kube, kubeconfig, capsys)
    assert _canary(kubeconfig, capsys, NEXT)[0] == 0
    kube.isvc(), kube.isvc()
    code, _, err = _cli(kubeconfig, capsys, "rollback", "--strategy", "kserve", "--json")
    assert code == 0, err
    zero = {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert kube.patches()[-1] == (ISVC, "application/merge-patch+json", zero)
    status = _status(kubeconfig, capsys)
    assert (status["phase"], status["canary_weight"], status["step"]) == ("Aborted", 0, "0/3")
    assert status["details"]["stable_revision"] == "detpipe-serve-predictor-00001"
    assert {t["revisionName"]: t["percent"] for t in status["details"]["traffic"]} == {
        "detpipe-serve-predictor-00002": 0, "detpipe-serve-predictor-00001": 100}  # fmt: skip


def test_status_prints_revisions_and_conditions(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    _released(kube, kubeconfig, capsys)
    kube.broken.add(NEXT + "/")
    assert _canary(kubeconfig, capsys, NEXT)[0] == 0
    code, out, _ = _cli(kubeconfig, capsys, "status", "--strategy", "kserve")
    assert code == 0
    rows = dict(re.match(r"^(.+?)  +(.*)$", line).groups() for line in out.splitlines())
    assert rows["phase"] == "Degraded" and rows["canary revision"] == "detpipe-serve-predictor-00002"
    assert rows["condition PredictorConfigurationReady"] == "False"
    assert rows["message"].startswith("PredictorConfigurationReady: RevisionFailed: Revision")


@pytest.mark.parametrize("stage", ["new", "first", "canary", "promoted", "rolled-back", "broken"])
def test_every_status_the_fake_writes_is_a_valid_inference_service(
    stage: str, tmp_path: Path, capsys
) -> None:
    with serve(KServeFake(), tmp_path / "kubeconfig") as kube:
        client = Kube(config.new_client_from_config(config_file=str(tmp_path / "kubeconfig")))
        cfg = CanaryConfig(URI, strategy="kserve")
        ka.apply_canary(client, cfg)
        for _ in range(0 if stage == "new" else 3):
            kube.isvc()
        if stage != "new" and stage != "first":
            if stage == "broken":
                kube.broken.add(NEXT + "/")
            ka.apply_canary(client, CanaryConfig(NEXT, strategy="kserve"))
            kube.isvc(), kube.isvc()
        if stage == "promoted":
            ka.promote_kserve(client, NS, NAME), ka.promote_kserve(client, NS, NAME)
        if stage == "rolled-back":
            ka.rollback_kserve(client, NS, NAME)
        crd_schema.validate(kube.isvc())


def test_standard_mode_is_refused_with_one_line(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    kube.standard = True
    _released(kube, kubeconfig, capsys)
    code, _, err = _cli(kubeconfig, capsys, "promote", "--strategy", "kserve")
    assert code == 2
    (line,) = err.splitlines()
    assert "runs in Standard mode: KServe reads canaryTrafficPercent in Serverless mode only" in line
    assert _status(kubeconfig, capsys)["message"] == "Standard mode: KServe splits no canary traffic there"


def test_a_cluster_without_kserve_is_told_what_to_install(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    missing = (404, "NotFound", "the server could not find the requested resource")
    kube.fail[object_path("ServingRuntime", NS, "detpipe")] = missing
    code, _, err = _canary(kubeconfig, capsys, URI)
    assert code == 3
    assert err.splitlines() == [
        "detpipe deploy: error: the cluster has no serving.kserve.io/v1alpha1 ServingRuntime API: "
        "install KServe (Serverless mode, with Knative Serving), or another --strategy"
    ]


# ------------------------------------------------------------------ --auto without Prometheus


AUTO = ("--auto", "--pause", "1s", "--analysis-interval", "1s", "--prometheus-url", "http://127.0.0.1:9")


def test_auto_rolls_back_a_revision_that_fails_to_start(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    _released(kube, kubeconfig, capsys)
    kube.broken.add(NEXT + "/")
    code, out, err = _canary(kubeconfig, capsys, NEXT, *AUTO)
    assert code == 4, err
    assert kube.isvc()["spec"]["predictor"]["canaryTrafficPercent"] == 0
    lines = out.splitlines()
    assert lines[-2].startswith("rolled back: canaryTrafficPercent 0 (KServe sends all traffic to the last "
                                "rolled-out revision): canary revision detpipe-serve-predictor-00002 failed: "
                                "PredictorConfigurationReady: RevisionFailed")  # fmt: skip
    assert lines[-1].startswith("canary yolov8n-coco 0.3.0: kserve, rolled back (canary revision")


def test_auto_rolls_back_when_the_step_never_reaches_the_canary(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    _released(kube, kubeconfig, capsys)
    kube.ready_after = 10**6  # starting, never ready, never failed
    code, out, _ = _canary(kubeconfig, capsys, NEXT, *AUTO, "--ready-timeout", "2s")
    assert code == 4
    assert "no 10% on the canary revision within 2s (detpipe-serve-predictor-00002: 0%, ready False)" in out


def test_auto_promotes_a_first_release_there_is_nothing_to_canary_against(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    code, out, err = _canary(kubeconfig, capsys, URI, *AUTO)
    assert code == 0, err
    assert "canaryTrafficPercent" not in kube.isvc()["spec"]["predictor"]
    assert "nothing to canary against" in out.splitlines()[-1]


def test_auto_rolls_back_when_prometheus_cannot_judge(cluster, capsys) -> None:
    """Port 9 answers nothing: every measurement is an error, so the step is inconclusive."""
    kube, _, kubeconfig = cluster
    _released(kube, kubeconfig, capsys)
    code, out, _ = _canary(kubeconfig, capsys, NEXT, *AUTO, "--analysis-count", "2")
    assert code == 4
    assert (
        "step 10%: canary detpipe-serve-predictor-00002 has 10% (stable detpipe-serve-predictor-00001)" in out
    )
    assert "step 10% inconclusive: error-rate: no data in 2 of 2 measurements" in out
    assert kube.isvc()["spec"]["predictor"]["canaryTrafficPercent"] == 0


def _m(**verdicts: str) -> list[dict]:
    return [
        {"name": k.replace("_", "-"), "value": 1.0, "limit": 0.0, "verdict": v} for k, v in verdicts.items()
    ]


def test_judge_follows_argo_rollouts_limits() -> None:
    cs = checks("m", "1")  # error-rate failureLimit 1, latency-p95-ratio failureLimit 2
    ok = _m(error_rate="pass", latency_p95_ratio="pass")
    assert judge(cs, [ok, ok, ok]).outcome == "pass"
    one_fail = _m(error_rate="fail", latency_p95_ratio="pass")
    assert judge(cs, [one_fail, ok, ok]).outcome == "pass"  # 1 failure is within failureLimit 1
    assert judge(cs, [one_fail, one_fail, ok]).outcome == "fail"
    slow = _m(error_rate="pass", latency_p95_ratio="fail")
    assert judge(cs, [slow, slow, ok]).outcome == "pass" and judge(cs, [slow] * 3).outcome == "fail"
    quiet = _m(error_rate="inconclusive", latency_p95_ratio="pass")
    assert judge(cs, [ok, quiet, ok]).outcome == "inconclusive"  # inconclusiveLimit 0
    assert judge(cs, [one_fail, one_fail, quiet]).outcome == "fail"  # a failure outranks no data


def test_the_kserve_deploy_role_covers_every_call(cluster, capsys) -> None:
    """k8s/serving/kserve/deploy-rbac.yaml grants what apply, promote, rollback and status send."""
    kube, _, kubeconfig = cluster
    _released(kube, kubeconfig, capsys)
    _canary(kubeconfig, capsys, NEXT)
    for action in ("promote", "rollback", "status"):
        assert _cli(kubeconfig, capsys, action, "--strategy", "kserve")[0] == 0
    role, binding = yaml.safe_load_all((ROOT / "k8s/serving/kserve/deploy-rbac.yaml").read_text())
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}  # fmt: skip
    verb = {"GET": "get", "PATCH": "patch"}
    used = set()
    for r in kube.requests:
        parts = r.path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        used.add((group, parts[parts.index("namespaces") + 2], verb[r.method]))
    assert {("serving.kserve.io", "inferenceservices", "patch"), ("", "serviceaccounts", "patch")} <= used
    assert used <= granted, used - granted
    assert {(g, r, "create") for g, r, v in used if v == "patch"} <= granted  # apply creates, too
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "detpipe-pipeline", "namespace": "detpipe"}
    ]
