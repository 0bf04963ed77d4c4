"""``detpipe edge rollout``: progressive, health-gated OTA rollouts (and their status, pause, resume)."""

from __future__ import annotations

import argparse
import signal
import textwrap
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detpipe.cli.options import duration, existing_dir, existing_file, non_negative_duration, positive_int

if TYPE_CHECKING:
    from detpipe.store import Store

ACTIONS = ("status", "pause", "resume")


def _steps(text: str) -> tuple[int, ...]:
    from detpipe.edge.controller import parse_steps
    from detpipe.errors import InvalidInput

    try:
        return parse_steps(text)
    except InvalidInput as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _failure_pct(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"{text!r}: a percentage from 0 to below 100")
    return value


def register(edge: argparse._SubParsersAction) -> None:
    p = edge.add_parser(
        "rollout",
        help="roll a published version out in steps gated on signed device reports; abort = signed rollback",
        description=textwrap.fill(
            "Move a version published with 'edge publish' through rollout steps (--steps 5,25,100 "
            "percent of the class's devices). At each step the controller waits until --min-reports "
            "valid signed reports on the version have arrived (fewer when the step selects fewer "
            "enrolled devices) and --bake has passed, then advances; when the failed share (health "
            "check failed, refused, crashed, rolled back on the device) exceeds --max-failure-pct it "
            "aborts: a signed rollback to the version before (devices on the new one go back; no "
            "other device installs it). Devices with no engine for their TensorRT are counted apart "
            "(incompatible), not as failures. The state and every decision live in the store "
            "(ota/rollouts/<class>/<version>.json); each run decides at most once, with a conditional "
            "write, so --once is safe as a Kubernetes CronJob (k8s/edge/controller/rollout-cronjob.yaml), "
            "two controllers at once make one decision, and a killed one never decides twice. "
            "'status' prints the state, 'pause' / 'resume' hold and release it. "
            "Exit 0 holding, advanced, completed; 4 aborted; 2 bad input; 5 store failure.",
            width=88,
        ),
        epilog="examples:\n"
        "  detpipe edge publish --store s3://detpipe --device-class orin --version 3 \\\n"
        "      --engine model.engine --keys ota-keys --rollout 0\n"
        "  detpipe edge rollout --store s3://detpipe --device-class orin --version 3 --keys ota-keys \\\n"
        "      --steps 5,25,100 --max-failure-pct 5 --min-reports 10 --bake 30m --once\n"
        "  detpipe edge rollout status --store s3://detpipe --device-class orin --version 3\n"
        "  detpipe edge rollout pause --store s3://detpipe --device-class orin --version 3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "action", nargs="?", choices=ACTIONS, default=None,
        help="status | pause | resume (none: run the controller)",
    )  # fmt: skip
    p.add_argument("--store", required=True, help="store URI (s3://bucket[/prefix] or a directory)")
    p.add_argument("--device-class", required=True, help="the device class rolled out to")
    p.add_argument("--version", required=True, help="the version rolled out (published already)")
    p.add_argument(
        "--keys", type=existing_dir, default=None,
        help="OTA keys directory (targets/snapshot/timestamp keys, root.json); needed to run the controller",
    )  # fmt: skip
    p.add_argument(
        "--trust", type=existing_file, default=None,
        help="root.json the device registrations are checked against (default: --keys' root.json)",
    )  # fmt: skip
    p.add_argument("--steps", type=_steps, default=(5, 25, 100), help="rollout percentages (5,25,100)")
    p.add_argument(
        "--max-failure-pct", type=_failure_pct, default=5.0,
        help="abort when more than this share of the reports on the version failed (5)",
    )  # fmt: skip
    p.add_argument(
        "--min-reports", type=positive_int, default=1,
        help="valid reports on the version each step needs before it is judged (1)",
    )  # fmt: skip
    p.add_argument(
        "--bake", type=non_negative_duration, default=timedelta(minutes=30),
        help="least time per step (30m; 0 for none)",
    )  # fmt: skip
    p.add_argument(
        "--lock-ttl", type=duration, default=timedelta(minutes=5),
        help="lease of one run; a killed controller's lease is taken over after it (5m)",
    )  # fmt: skip
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one cycle, then exit (a CronJob)")
    mode.add_argument(
        "--interval", type=duration, default=None,
        help="cycle every INTERVAL until completed or aborted (e.g. 60s)",
    )  # fmt: skip
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the result / state as JSON")
    p.set_defaults(func=_rollout)


def _rollout(args: argparse.Namespace) -> int:
    from detpipe.edge.targets import check_device_class, check_version
    from detpipe.errors import InvalidInput
    from detpipe.store import open_store

    check_device_class(args.device_class)
    check_version(args.version)
    if args.action is None and args.keys is None:
        raise InvalidInput("--keys DIR is needed to run the controller (it re-signs the rollout)")
    store = open_store(args.store)
    if args.action == "status":
        return _status(store, args)
    if args.action in ("pause", "resume"):
        from detpipe.edge.controller import pause, resume

        doc = (pause if args.action == "pause" else resume)(store, args.device_class, args.version)
        print(f"rollout {args.device_class} {args.version}: {doc['status']} at {doc['pct']}%")
        return 0
    return _run(store, args)


def _run(store: Store, args: argparse.Namespace) -> int:
    from detpipe.edge.controller import Controller, RolloutSpec
    from detpipe.edge.reports import load_root, trusted_root
    from detpipe.io import write_json

    spec = RolloutSpec(args.steps, args.max_failure_pct, args.min_reports, args.bake)
    root = trusted_root(store, anchor=load_root(args.trust)) if args.trust else None
    ctl = Controller(
        store, args.device_class, args.version, args.keys, spec, root=root, lock_ttl=args.lock_ttl
    )
    stop = threading.Event()
    if args.interval is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    while True:
        result = ctl.run_once()
        print(result.line(args.device_class), flush=True)
        if args.json is not None:
            write_json(args.json, result.to_dict())
        if (
            args.interval is None
            or result.status in ("completed", "aborted")
            or stop.wait(args.interval.total_seconds())
        ):
            return result.exit_code


def _status(store: Store, args: argparse.Namespace) -> int:
    from detpipe.edge.controller import ABORTED_EXIT, read_state
    from detpipe.errors import NotFound
    from detpipe.io import write_json

    doc = read_state(store, args.device_class, args.version)
    if doc is None:
        raise NotFound(
            f"no rollout of {args.device_class} {args.version} (start one with detpipe edge rollout)"
        )
    print(format_status(doc))
    if args.json is not None:
        write_json(args.json, doc)
    return ABORTED_EXIT if doc["status"] == "aborted" else 0


def format_status(doc: dict[str, Any]) -> str:
    """The human-readable state: where it stands, the last check, every decision."""
    steps = ",".join(f"[{s}]" if i == doc["step"] else str(s) for i, s in enumerate(doc["steps"]))
    lines = [
        f"rollout {doc['device_class']} {doc['version']}: {doc['status']} at {doc['pct']}% "
        f"(steps {steps}; previous {doc['previous'] or 'none'}; max failure {doc['max_failure_pct']:g}%, "
        f"min reports {doc['min_reports']}, bake {doc['bake_s']}s)",
    ]
    check = doc.get("last_check")
    if check:
        lines.append(f"last check {check['at']}: {check['action']}: {check['reason']}")
    lines.append("decisions")
    for d in doc["decisions"]:
        c = d.get("counts") or {}
        counts = f" [{c['ok']} ok, {c['failed']} failed, {c['incompatible']} incompatible]" if c else ""
        lines.append(f"  {d['n']:>3}  {d['at']}  {d['action']:<8} {d['pct']:>3}%  {d['reason']}{counts}")
    return "\n".join(lines)
