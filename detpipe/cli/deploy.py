"""``detpipe deploy``: roll a release of the inference server out as a canary, judge it, finish it.

Subcommands parse flags, call :mod:`detpipe.deploy` and print::

    detpipe deploy canary --model-uri s3://detpipe/models/yolov8n-coco/0.2.0 --dry-run
    detpipe deploy canary --model-uri s3://detpipe/models/yolov8n-coco/0.2.0 --strategy kserve --auto
    detpipe deploy status [--prometheus http://127.0.0.1:9090] [--json]
    detpipe deploy promote | rollback
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING

from detpipe.cli.options import positive_int, unit_float

if TYPE_CHECKING:
    from detpipe.deploy.config import CanaryConfig

log = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  # print what would be applied (no cluster needed)
  detpipe deploy canary --model-uri s3://detpipe/models/yolov8n-coco/0.2.0 --dry-run
  # apply with the current kube context: 10 % -> 50 % -> 100 %, 10 minutes and an analysis each
  detpipe deploy canary --model-uri s3://detpipe/models/yolov8n-coco/0.2.0 --steps 10,50,100 --pause 10m
  # a cluster without Argo Rollouts: Gateway API weights, moved by `deploy promote`
  detpipe deploy canary --model-uri s3://detpipe/models/yolov8n-coco/0.2.0 --strategy gateway --pause manual
  detpipe deploy status --prometheus http://prometheus.monitoring:9090
  detpipe deploy promote        # next step (what `kubectl argo rollouts promote` does)
  detpipe deploy rollback       # back to stable (what `kubectl argo rollouts abort` does)
  # KServe (Serverless mode): an InferenceService on the 'detpipe' ServingRuntime, its
  # canaryTrafficPercent judged by detpipe on Prometheus: exit 0 promoted, 4 rolled back
  detpipe deploy canary --model-uri s3://detpipe/models/yolov8n-coco/0.2.0 --strategy kserve --auto \\
      --s3-endpoint https://minio.detpipe.svc.cluster.local:9000 --pause 5m
  detpipe deploy status --strategy kserve --prometheus http://prometheus.monitoring:9090
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="canary rollout of the inference server (Argo Rollouts, Gateway API or KServe)",
        description=textwrap.fill(
            "Roll a published release out to the serving pods as a canary and finish it. 'canary' renders "
            "the objects (one function per object, detpipe.deploy) and applies them server-side (field "
            "manager 'detpipe') with the in-cluster account or the current kube context; --dry-run prints "
            "them as multi-document YAML instead. Under Argo Rollouts every step sets a weight, pauses, then "
            "runs AnalysisTemplates whose Prometheus queries read the server's own metrics for the canary's "
            "model version (5xx error rate, p95 latency against stable, shadow agreement with --shadow); a "
            "failed analysis aborts the rollout back to stable. With --strategy gateway an HTTPRoute splits "
            "traffic between stable and canary Deployments and 'promote' moves the weights. With --strategy "
            "kserve an InferenceService (KServe Serverless mode) on the 'detpipe' ServingRuntime gets the "
            "release and canaryTrafficPercent the first step; KServe splits the traffic between the new "
            "revision and the last one rolled out, 'promote' moves the percentage, 'rollback' sets it to 0, "
            "and --auto judges every step with the same queries, promoting or rolling back by itself.",
            width=88,
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    c = actions.add_parser(
        "canary",
        help="render and apply a canary of a release",
        description="Render (and unless --dry-run apply) a canary of MODEL_URI.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--model-uri", required=True, help="the release: s3://BUCKET/models/NAME/VERSION")
    c.add_argument("--image", default="", help="serving image (default: detpipe.images.SERVE_IMAGE / _GPU_)")
    c.add_argument(
        "--steps", default="10,50,100", help="canary weights in %%, ending at 100 (default: 10,50,100)"
    )
    c.add_argument(
        "--pause",
        default="10m",
        help="hold per step before its analysis: 30s, 10m, 1h or 'manual' (default: 10m)",
    )
    c.add_argument("--format", default="onnx", help="file of the release to serve: onnx, onnx-int8, engine")
    c.add_argument("--replicas", type=positive_int, default=2, help="serving pods (default: 2)")
    c.add_argument(
        "--max-replicas", type=positive_int, default=6, help="Rollout's HPA scales up to this (default: 6)"
    )
    c.add_argument(
        "--gpu",
        action="store_true",
        help="GPU pods: nvidia.com/gpu 1 each, the GPU serving image (with kserve: the GPU variant of the "
        "'detpipe' ServingRuntime)",
    )
    g = c.add_argument_group("analysis (Argo Rollouts' AnalysisTemplates, or --auto under KServe)")
    g.add_argument(
        "--prometheus-url",
        default="http://prometheus-operated.monitoring.svc:9090",
        help="Prometheus the AnalysisRuns query (default: %(default)s)",
    )
    g.add_argument("--analysis-window", default="2m", help="PromQL rate window (default: 2m)")
    g.add_argument("--analysis-interval", default="1m", help="time between measurements (default: 1m)")
    g.add_argument(
        "--analysis-count", type=positive_int, default=3, help="measurements per step (default: 3)"
    )
    g.add_argument(
        "--max-error-rate", type=unit_float, default=0.01, help="5xx share that fails (default: 0.01)"
    )
    g.add_argument(
        "--max-latency-ratio", type=float, default=1.25, help="canary/stable p95 that fails (default: 1.25)"
    )
    g.add_argument(
        "--shadow",
        action="store_true",
        help="the release ran as --shadow of stable: gate on its agreement first",
    )
    g.add_argument("--min-agreement", type=unit_float, default=0.9, help="with --shadow (default: 0.9)")
    gw = c.add_argument_group("Gateway API (--strategy gateway)")
    gw.add_argument("--gateway", default="detpipe-gateway", help="Gateway the HTTPRoute attaches to")
    gw.add_argument(
        "--stable-model-uri",
        default=None,
        help="release of the stable Deployment (default: leave it as it is)",
    )
    ks = c.add_argument_group("KServe (--strategy kserve, Serverless mode)")
    ks.add_argument(
        "--auto",
        action="store_true",
        help="judge every step on --prometheus-url with the analysis checks, narrowed to the canary "
        "revision's pods, and promote (exit 0) or roll back (canaryTrafficPercent 0, exit 4) by itself; "
        "no data at a step rolls back too. Needs a --pause duration",
    )
    ks.add_argument(
        "--ready-timeout",
        default="10m",
        help="with --auto: how long a step may take to reach the canary revision before it rolls back "
        "(default: 10m)",
    )
    ks.add_argument(
        "--s3-endpoint",
        default="https://minio.detpipe.svc.cluster.local:9000",
        help="the store as KServe's storage initializer reaches it, https://HOST:PORT or http://HOST:PORT "
        "(ServiceAccount annotations serving.kserve.io/s3-endpoint and s3-usehttps; default: %(default)s)",
    )
    ks.add_argument(
        "--s3-region", default="us-east-1", help="serving.kserve.io/s3-region (default: us-east-1)"
    )
    ks.add_argument(
        "--s3-secret",
        default="detpipe-kserve-s3",
        help="Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY the ServiceAccount names, never read "
        "by detpipe (template: k8s/serving/kserve/secrets/; default: %(default)s)",
    )
    c.add_argument("--dry-run", action="store_true", help="print the objects as YAML; touch no cluster")
    _common(c)
    c.set_defaults(func=_canary)

    for name, helptext, func in (
        ("promote", "next step, or full promotion after the last", _promote),
        ("rollback", "abort: all traffic and replicas back to stable", _rollback),
        ("status", "phase, step, weight (and the checks with --prometheus)", _status),
    ):
        a = actions.add_parser(name, help=helptext, description=helptext)
        _common(a)
        a.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if name == "status":
            a.add_argument(
                "--prometheus", default=None, help="run the analysis checks against this Prometheus"
            )
            a.add_argument("--analysis-window", default="2m", help="PromQL rate window (default: 2m)")
        a.set_defaults(func=func)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--strategy", default="rollout", choices=("rollout", "gateway", "kserve"), help="(default: rollout)"
    )
    p.add_argument("--namespace", default="detpipe", help="namespace (default: detpipe)")
    p.add_argument(
        "--name", default="detpipe-serve", help="Rollout / Deployment name (default: detpipe-serve)"
    )
    p.add_argument("--context", default=None, help="kube context (default: in-cluster, else the current one)")
    p.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )


def config_from_args(args: argparse.Namespace) -> CanaryConfig:
    """The :class:`~detpipe.deploy.config.CanaryConfig` of ``deploy canary``'s flags."""
    from detpipe.deploy.config import CanaryConfig, parse_pause, parse_steps

    return CanaryConfig(
        model_uri=args.model_uri,
        image=args.image,
        steps=parse_steps(args.steps),
        pause=parse_pause(args.pause),
        strategy=args.strategy,
        namespace=args.namespace,
        name=args.name,
        model_format=args.format,
        replicas=args.replicas,
        max_replicas=args.max_replicas,
        gpu=args.gpu,
        prometheus_url=args.prometheus_url,
        analysis_window=args.analysis_window,
        analysis_interval=args.analysis_interval,
        analysis_count=args.analysis_count,
        max_error_rate=args.max_error_rate,
        max_latency_ratio=args.max_latency_ratio,
        min_agreement=args.min_agreement if args.shadow else None,
        gateway=args.gateway,
        stable_model_uri=args.stable_model_uri,
        s3_endpoint=args.s3_endpoint,
        s3_region=args.s3_region,
        s3_secret=args.s3_secret,
        ready_timeout=args.ready_timeout,
    )


def _canary(args: argparse.Namespace) -> int:
    from detpipe.deploy.canary import roll_out
    from detpipe.deploy.render import to_yaml

    cfg = config_from_args(args)
    if args.auto:
        return _auto(cfg, args)
    docs = roll_out(cfg, dry_run=args.dry_run, context=args.context, kubeconfig=args.kubeconfig)
    if args.dry_run:
        sys.stdout.write(to_yaml(docs))
        return 0
    for doc in docs:
        print(f"applied {doc['kind']} {cfg.namespace}/{doc['metadata']['name']}")
    print(f"canary {cfg.model_name} {cfg.version}: {cfg.strategy}, steps {','.join(map(str, cfg.steps))}")
    return 0


def _auto(cfg: CanaryConfig, args: argparse.Namespace) -> int:
    """``--auto``: apply, judge each step, promote or roll back; exit 0 or 4."""
    from detpipe.deploy.canary import roll_out_auto
    from detpipe.errors import InvalidInput

    if args.dry_run:
        raise InvalidInput("--auto applies and judges the canary: drop --dry-run (or --auto)")
    result = roll_out_auto(cfg, context=args.context, kubeconfig=args.kubeconfig, report=_say)
    outcome = "promoted" if result.promoted else "rolled back"
    print(f"canary {cfg.model_name} {cfg.version}: kserve, {outcome} ({result.reason})", flush=True)
    return result.exit_code


def _say(line: str) -> None:
    print(line, flush=True)


def _promote(args: argparse.Namespace) -> int:
    from detpipe.deploy import actions, kserve_actions

    return _act(args, actions.promote_rollout, actions.promote_gateway, kserve_actions.promote_kserve)


def _rollback(args: argparse.Namespace) -> int:
    from detpipe.deploy import actions, kserve_actions

    return _act(args, actions.abort_rollout, actions.rollback_gateway, kserve_actions.rollback_kserve)


def _act(args: argparse.Namespace, *by_strategy: Callable) -> int:
    """Run the strategy's action (rollout, gateway, kserve) on the cluster, then print the status."""
    from detpipe.deploy.cluster import Kube

    kube = Kube.connect(args.context, args.kubeconfig)
    action = dict(zip(("rollout", "gateway", "kserve"), by_strategy, strict=True))[args.strategy]
    action(kube, args.namespace, args.name)
    return _print_status(kube, args)


def _status(args: argparse.Namespace) -> int:
    from detpipe.deploy.cluster import Kube

    return _print_status(Kube.connect(args.context, args.kubeconfig), args)


def _print_status(kube, args: argparse.Namespace) -> int:
    from dataclasses import replace

    from detpipe.deploy import actions, kserve_actions, queries
    from detpipe.deploy.config import release_identity
    from detpipe.deploy.kserve_auto import kserve_checks
    from detpipe.deploy.prometheus import evaluate

    get = {
        "rollout": actions.rollout_status,
        "gateway": actions.gateway_status,
        "kserve": kserve_actions.kserve_status,
    }[args.strategy]
    status = get(kube, args.namespace, args.name)
    if getattr(args, "prometheus", None):
        model, version = release_identity(status.model_uri)
        if args.strategy == "kserve":  # served under the InferenceService's name, on its revisions' pods
            revs = status.details
            checks = kserve_checks(args.name, args.namespace, version, revs["canary_revision"],
                                   revs["stable_revision"], window=args.analysis_window)  # fmt: skip
        else:
            checks = queries.checks(model, version, window=args.analysis_window)
        status = replace(status, checks=evaluate(args.prometheus, checks))
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
        return 0
    rows = [
        ("name", f"{args.namespace}/{status.name} ({status.strategy})"),
        ("phase", status.phase),
        ("step", status.step),
        ("canary weight", f"{status.canary_weight}%"),
        ("canary version", status.canary_version),
        ("release", status.model_uri),
    ]
    if args.strategy == "kserve":
        d = status.details
        rows += [("canary revision", d["canary_revision"]), ("stable revision", d["stable_revision"])]
        rows += [(f"condition {c['type']}", c["status"]) for c in d["conditions"]]
    if status.message:
        rows.append(("message", status.message))
    for c in status.checks:
        value = "no data" if c["value"] is None else f"{c['value']:.4g}"
        rows.append((f"check {c['name']}", f"{value} (limit {c['limit']:g}): {c['verdict']}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
