"""``detpipe edge``: the OTA fleet, signed with TUF (keygen, publish, refresh, agent)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import tempfile
import textwrap
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from detpipe.cli.options import duration, existing_file, percentage, positive_float, positive_int

if TYPE_CHECKING:
    from detpipe.signing import ReleaseVerifier

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edge",
        help="over-the-air updates for edge devices (TUF-signed: keygen, publish, agent)",
        description=textwrap.fill(
            "Edge fleet OTA on The Update Framework (python-tuf). 'keygen' makes the signing keys and "
            "the root.json devices trust; 'publish' uploads an engine or ONNX model for a device class "
            "and signs new metadata into the store's ota/ prefix (staged rollout by percentage or "
            "group, signed rollback); 'refresh' re-signs the timestamp (run it more often than "
            "--expires); 'agent' runs on the device: verify, download (resumable), install into an A/B "
            "slot, health-check, reload the local server, roll back on failure.",
            width=88,
        ),
    )
    edge = p.add_subparsers(dest="edge_command", metavar="EDGE_COMMAND", required=True)
    _register_keygen(edge)
    _register_publish(edge)
    _register_refresh(edge)
    _register_rotate(edge)
    _register_agent(edge)
    _register_enroll(edge)
    _register_fleet(edge)
    from detpipe.cli.edge_rollout import register as register_rollout

    register_rollout(edge)


def _register_keygen(edge: argparse._SubParsersAction) -> None:
    p = edge.add_parser(
        "keygen",
        help="make ed25519 keys (root offline; targets/snapshot/timestamp online) and root.json",
        description="Write DIR/{root,targets,snapshot,timestamp}.pem (mode 0600) and DIR/root.json (and "
        "DIR/1.root.json), the signed initial root metadata that every device is provisioned with "
        "(--trust). Keep root.pem offline: publishing needs only the three online keys and the root "
        "files (N.root.json, root.json).",
        epilog="example:\n  detpipe edge keygen --out ota-keys",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="keys directory")
    p.add_argument("--expires", type=duration, default=timedelta(days=365), help="root validity (365d)")
    p.add_argument("--overwrite", action="store_true", help="replace existing keys (a new fleet)")
    p.set_defaults(func=_keygen)


def _register_publish(edge: argparse._SubParsersAction) -> None:
    p = edge.add_parser(
        "publish",
        help="upload an engine/ONNX for a device class and sign it (staged rollout, rollback)",
        description=textwrap.fill(
            "Publish VERSION for a device class: --engine (repeat it: one per TensorRT version, compute "
            "capability, DLA core and precision; each one's .json sidecar beside it gives its TensorRT/GPU "
            "compatibility, and each device takes the engine that fits it), --onnx (alone or with engines: "
            "devices without a fitting engine build one from it, or serve the ONNX on CPU) or --release "
            "(the release's engines/<class>/model.engine, else its model.onnx). Publishing files for a "
            "VERSION that is out already adds them (its rollout stays unless --rollout/--group). Without an "
            "artifact it changes the rollout of an already published VERSION. --rollback-to V withdraws "
            "the class's newer versions and signs V as a rollback: the only way devices go down a version.",
            width=88,
        ),
        epilog="examples:\n"
        "  detpipe edge publish --store s3://detpipe --device-class cpu --onnx model.onnx --version 3 \\\n"
        "      --keys ota-keys --rollout 10 --group canary\n"
        "  detpipe edge publish --store s3://detpipe --device-class cpu --version 3 --keys ota-keys \\\n"
        "      --rollout 50\n"
        "  detpipe edge publish --store s3://detpipe --device-class cpu --rollback-to 2 --keys ota-keys\n"
        "  detpipe edge publish --store s3://detpipe --device-class orin --version 3 --keys ota-keys \\\n"
        "      --engine jp6/model.fp16.engine --engine jp5/model.fp16.engine --onnx model.onnx\n"
        "  detpipe edge publish --store s3://detpipe --device-class orin-sm87-trt10.3.0 --version 1.0.0 \\\n"
        "      --release s3://detpipe/models/yolov8n-coco/1.0.0 --release-key release.pub --keys ota-keys",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", required=True, help="store URI (s3://bucket[/prefix] or a directory)")
    p.add_argument("--device-class", required=True, help="e.g. cpu, orin-sm87-trt10.3.0")
    p.add_argument(
        "--engine",
        type=existing_file,
        action="append",
        default=[],
        help="a TensorRT engine with its FILE.json sidecar (repeat: one per TensorRT/GPU/precision)",
    )
    p.add_argument("--onnx", type=existing_file, help="the ONNX model (alone, or the engines' fallback)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--release", help="a release URI: s3://bucket/models/NAME/VERSION or a directory")
    src.add_argument("--rollback-to", metavar="V", help="signed rollback of the class to published version V")
    p.add_argument("--version", help="the version to publish (required unless --rollback-to)")
    p.add_argument("--keys", type=Path, required=True, help="keys directory (online keys + root.json)")
    p.add_argument("--rollout", type=percentage, default=None, help="percent of the class's devices (100)")
    p.add_argument(
        "--group", action="append", default=None, help="a device group that always gets it (repeat)"
    )
    p.add_argument(
        "--release-key",
        type=Path,
        default=None,
        metavar="PUB",
        help="public key the --release must be signed with (manifest.sig, detpipe release sign), checked "
        "before anything is downloaded or signed for the fleet (default: $DETPIPE_RELEASE_KEY)",
    )
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="publish a --release without checking its signature: LOCAL DEVELOPMENT ONLY",
    )
    p.add_argument("--expires", type=duration, default=timedelta(days=7), help="metadata validity (7d)")
    p.set_defaults(func=_publish)


def _register_refresh(edge: argparse._SubParsersAction) -> None:
    p = edge.add_parser(
        "refresh",
        help="re-sign snapshot + timestamp with a new expiry (a CronJob, more often than --expires)",
        description="Devices refuse expired metadata (freeze attack): re-sign timestamp and snapshot.",
    )
    p.add_argument("--store", required=True, help="store URI")
    p.add_argument("--keys", type=Path, required=True, help="keys directory (snapshot + timestamp keys)")
    p.add_argument("--expires", type=duration, default=timedelta(days=7), help="validity (7d)")
    p.set_defaults(func=_refresh)


def _register_rotate(edge: argparse._SubParsersAction) -> None:
    p = edge.add_parser(
        "rotate",
        help="replace a role's key: new root version signed by the old root key (offline ceremony)",
        description="The new root version goes to the store and to the keys directory (N.root.json, "
        "root.json: provision new devices with it); every other store gets it on its next publish. "
        "Devices follow the chain of root versions on their next cycle (TUF spec 5.3).",
        epilog="example:\n  detpipe edge rotate --store s3://detpipe --keys ota-keys --role targets",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", required=True, help="store URI")
    p.add_argument("--keys", type=Path, required=True, help="keys directory, with root.pem")
    p.add_argument("--role", required=True, choices=("root", "targets", "snapshot", "timestamp"), help="role")
    p.add_argument(
        "--expires", type=duration, default=timedelta(days=7), help="validity of re-signed metadata"
    )
    p.set_defaults(func=_rotate)


def _register_agent(edge: argparse._SubParsersAction) -> None:
    p = edge.add_parser(
        "agent",
        help="the device agent: verify, download, install A/B, health-check, reload, roll back",
        description=textwrap.fill(
            "Poll the store every --interval seconds (--once: one cycle). The active model is "
            "DIR/current/ (a symlink to slot a or b) with manifest.json beside it; status goes to "
            "DIR/status.json and the store's devices/<ID>/status.json. A version whose artifact fails "
            "(hash, health check, the server rejecting the model) is refused for good; one the server "
            "could not take for another reason (token, model name, server error) is retried next cycle. "
            "Exit after --once: 0 (unchanged, installed, rolled back to a signed version), 3 when no "
            "target of the new version fits this device (outcome incompatible: no engine for its "
            "TensorRT/GPU and no ONNX; looked at again next cycle), 1 for any other failure "
            "(refused, rolled back, unreachable, retrying); bad arguments exit 2. Store "
            "settings from DETPIPE_S3_* / a mounted Secret.",
            width=88,
        ),
        epilog="example:\n"
        "  detpipe edge agent --store s3://detpipe --device-class cpu --device-id cam-17 \\\n"
        "      --trust /etc/detpipe/root.json --dir /var/lib/detpipe-edge \\\n"
        "      --reload-url http://127.0.0.1:8080/v2/repository/models/yolo/load \\\n"
        "      --reload-token-file /etc/detpipe/reload-token",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", required=True, help="store URI (s3://..., a directory, or an https:// mirror)")
    p.add_argument("--device-class", required=True, help="this device's class")
    p.add_argument("--device-id", required=True, help="this device's id")
    p.add_argument("--trust", type=existing_file, required=True, help="the provisioned root.json")
    p.add_argument("--dir", type=Path, required=True, help="state directory (slots, current, downloads)")
    p.add_argument("--interval", type=positive_float, default=300.0, help="seconds between cycles (300)")
    p.add_argument("--once", action="store_true", help="run one cycle and exit")
    p.add_argument("--reload-url", default=None, help="the local server's model-load URL")
    p.add_argument(
        "--reload-token-file",
        type=Path,
        default=_env_path("DETPIPE_RELOAD_TOKEN_FILE"),
        help="file with the server's reload token, sent as 'Authorization: Bearer' (env "
        "DETPIPE_RELOAD_TOKEN_FILE; the server's --reload-token-file)",
    )
    p.add_argument(
        "--report-store",
        default=None,
        help="store URI the signed status report goes to when --store is a read-only https:// mirror "
        "or CDN (default: --store; a mirror alone gets no report)",
    )
    p.add_argument("--group", action="append", default=[], help="rollout group of this device (repeat)")
    p.add_argument("--backoff-max", type=positive_float, default=600.0, help="max retry delay (600 s)")
    p.add_argument("--max-cycles", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_agent)


def _env_path(name: str) -> Path | None:
    """A path from the environment variable ``name`` (read when the parser is built), or None."""
    import os

    value = os.environ.get(name, "").strip()
    return Path(value) if value else None


def _keygen(args: argparse.Namespace) -> int:
    from detpipe.edge.keys import keygen

    root = keygen(args.out, expires=args.expires, overwrite=args.overwrite)
    print(f"wrote keys and {root} (provision devices with it; keep {args.out / 'root.pem'} offline)")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from detpipe.edge.publish import (
        Artifact,
        PublishConfig,
        artifact_from_release,
        publish_version,
        rollback_to,
        set_rollout,
    )
    from detpipe.errors import InvalidInput
    from detpipe.store import open_store

    store = open_store(args.store)
    groups = tuple(args.group) if args.group is not None else None
    if args.rollback_to and (args.engine or args.onnx):
        raise InvalidInput("--rollback-to re-signs a published version: no --engine/--onnx with it")
    if args.rollback_to:
        release = rollback_to(store, args.keys, args.device_class, args.rollback_to, args.expires)
    elif args.version is None:
        raise InvalidInput("--version is required (or --rollback-to V)")
    elif (args.engine or args.onnx) and args.release:
        raise InvalidInput("give --engine/--onnx or --release, not both")
    elif not args.engine and args.onnx is None and args.release is None:
        if args.rollout is None and groups is None:
            raise InvalidInput(
                "give --engine, --onnx or --release (or --rollout/--group to change a rollout)"
            )
        release = set_rollout(
            store, args.keys, args.device_class, args.version, args.rollout, groups, args.expires
        )
    else:
        verifier = _release_verifier(args)  # bad key or flags: refused before anything is read
        with tempfile.TemporaryDirectory(prefix="detpipe-edge-") as work:
            if args.release:
                artifact, fmt = artifact_from_release(
                    args.release, args.device_class, Path(work), verifier=verifier,
                    allow_unsigned=args.allow_unsigned,
                )  # fmt: skip
                files = [Artifact(artifact, fmt)]
            else:  # each engine's sidecar is read and checked here, before anything is uploaded
                files = [Artifact(e, "engine") for e in args.engine]
                files += [Artifact(args.onnx, "onnx")] if args.onnx else []
            cfg = PublishConfig(
                device_class=args.device_class,
                version=args.version,
                artifact=files[0].path,
                fmt=files[0].fmt,
                keys=args.keys,
                rollout_pct=args.rollout,
                groups=groups,
                expires=args.expires,
                sidecar=files[0].sidecar,
                extra=tuple(files[1:]),
            )
            releases = publish_version(store, cfg)
        if len(releases) > 1:
            first = releases[0]
            targets = [{"target": r.path, "format": r.format, "sha256": r.sha256} for r in releases]
            summary = {k: first.custom()[k] for k in ("version", "device_class", "rollout_pct", "groups")}
            print(json.dumps({**summary, "targets": targets}, indent=2))
            return 0
        release = releases[0]
    print(json.dumps({"target": release.path, **release.custom(), "sha256": release.sha256}, indent=2))
    return 0


def _release_verifier(args: argparse.Namespace) -> ReleaseVerifier | None:
    """The signature check of ``--release`` (None: no --release, or --allow-unsigned).

    Raises:
        InvalidInput: both --release-key and --allow-unsigned, either without --release, or a
            key file that is no EC public key.
    """
    from detpipe.errors import InvalidInput

    if args.release_key and args.allow_unsigned:
        raise InvalidInput("pass --release-key or --allow-unsigned, not both")
    if not args.release:
        if args.release_key or args.allow_unsigned:
            raise InvalidInput("--release-key and --allow-unsigned apply to --release only")
        return None
    if args.allow_unsigned:
        return None  # artifact_from_release warns
    key = args.release_key or _env_path("DETPIPE_RELEASE_KEY")
    if key is None:
        return None  # artifact_from_release refuses, naming both ways out
    from detpipe.signing import ReleaseVerifier

    return ReleaseVerifier(key)


def _refresh(args: argparse.Namespace) -> int:
    from detpipe.edge.repository import StoreRepository
    from detpipe.store import open_store

    version = StoreRepository(open_store(args.store), args.keys, args.expires).refresh_timestamp()
    print(f"timestamp v{version} signed, valid for {args.expires}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from detpipe.edge.rotate import rotate_key
    from detpipe.store import open_store

    version = rotate_key(open_store(args.store), args.keys, args.role, args.expires)
    print(f"rotated the {args.role} key: root v{version} (devices follow it on their next cycle)")
    return 0


def _agent(args: argparse.Namespace) -> int:
    from detpipe.edge.agent import Agent, AgentConfig
    from detpipe.errors import EngineIncompatible
    from detpipe.store.config import RetryPolicy

    cfg = AgentConfig(
        store=args.store,
        device_class=args.device_class,
        device_id=args.device_id,
        trust=args.trust,
        dir=args.dir,
        interval_s=args.interval,
        reload_url=args.reload_url,
        reload_token_file=args.reload_token_file,
        groups=tuple(args.group),
        report_store=args.report_store,
        backoff=RetryPolicy(attempts=1, base_delay_s=min(5.0, args.interval), max_delay_s=args.backoff_max),
    )
    agent = Agent(cfg)
    if args.once:
        result = agent.run_once()
        print(json.dumps(result, indent=2))
        if result["outcome"] == "incompatible":
            return EngineIncompatible.exit_code
        return 0 if result["outcome"] in ("unchanged", "installed", "rolled-back-to") else 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent.run(stop, max_cycles=args.max_cycles)
    return 0


def _register_enroll(edge: argparse._SubParsersAction) -> None:
    p = edge.add_parser(
        "enroll",
        help="a device's own MinIO user and least-privilege policy (read ota/, write devices/<id>/)",
        description=textwrap.fill(
            "Give one device its own store credentials instead of the root user's. The device's "
            "MinIO user is its id (the agent's --device-id: the node name on Kubernetes) with a "
            "generated secret; the one device policy (MinIO policy variable ${aws:username}) lets it "
            "read ota/ and write only devices/<its id>/, and denies models/. Without --out it prints "
            "the policy and the mc commands (no secret is made). --out DIR writes policy.json, "
            "device.json, enroll.sh and credentials/{accesskey,secretkey} (mode 0600), the files the "
            "device installs at /etc/detpipe-edge/minio; the secret key is never printed. --apply "
            "also creates the user and policy in MinIO (admin credentials and CA bundle from "
            "DETPIPE_S3_* as for the store; endpoint --minio-admin-url, else DETPIPE_S3_ENDPOINT).",
            width=88,
        ),
        epilog="examples:\n"
        "  detpipe edge enroll --store s3://detpipe --device-class cpu --device-id cam-17\n"
        "  detpipe edge enroll --store s3://detpipe --device-class orin-sm87-trt10.3.0 \\\n"
        "      --device-id jetson-07 --out enroll/jetson-07 --apply --minio-admin-url https://minio.detpipe.svc:9000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", required=True, help="the agent's store URI (s3://bucket[/prefix])")
    p.add_argument("--device-class", required=True, help="the device's class")
    p.add_argument("--device-id", required=True, help="the device's id (3-63 of a-z 0-9 . _ -)")
    p.add_argument("--out", type=Path, default=None, help="write the policy, commands and credentials here")
    p.add_argument("--overwrite", action="store_true", help="enroll again into --out (a new secret key)")
    p.add_argument(
        "--apply", action="store_true", help="create the user and policy in MinIO now (needs --out)"
    )
    p.add_argument("--minio-admin-url", default=None, help="MinIO's URL for --apply (DETPIPE_S3_ENDPOINT)")
    p.add_argument(
        "--pubkey",
        type=existing_file,
        default=None,
        help="the device's public key (its agent's DIR/device.pub): registered in the store at "
        "ota/devices/<class>/<id>.json, signed with the targets key of --keys; only enrolled devices' "
        "reports count",
    )
    p.add_argument(
        "--keys", type=Path, default=None, help="keys directory (targets.pem, root.json) for --pubkey"
    )
    p.add_argument("--revoke", action="store_true", help="remove the device's registration from the store")
    p.set_defaults(func=_enroll)


def _enroll(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from detpipe.edge.enroll import (
        Enrollment,
        apply_enrollment,
        mc_commands,
        new_credentials,
        write_enrollment,
    )
    from detpipe.errors import InvalidInput
    from detpipe.store.config import S3Config

    if args.revoke or args.pubkey is not None or args.keys is not None:
        registered = _register_device_key(args)
        if args.out is None:
            return 0
    else:
        registered = None
    enrollment = Enrollment(args.store, args.device_class, args.device_id)
    if args.apply and args.out is None:
        raise InvalidInput("--apply needs --out DIR: the device's secret key is written only there")
    if args.minio_admin_url and not args.apply:
        raise InvalidInput("--minio-admin-url is for --apply")
    admin = None
    if args.apply:
        env = dict(os.environ)
        if args.minio_admin_url:
            env["DETPIPE_S3_ENDPOINT"] = args.minio_admin_url
            env.pop("DETPIPE_S3_SECURE", None)  # the URL's scheme says it
        admin = S3Config.from_env(env)
        admin = replace(admin, retry=replace(admin.retry, attempts=1))
    if args.out is None:
        print(f"# policy.json (MinIO policy {enrollment.policy_name}, the same for every device):")
        print(json.dumps(enrollment.policy(), indent=2))
        print("\n".join(mc_commands(enrollment)))
        return 0
    creds = new_credentials(enrollment.device_id)
    files = write_enrollment(enrollment, creds, args.out, overwrite=args.overwrite)
    if admin is not None:
        apply_enrollment(enrollment, creds, admin)
    print("\n".join(mc_commands(enrollment, files)))
    status = "created in MinIO" if admin is not None else "not created yet: run the mc commands above"
    where = f"policy {files.policy}, credentials {files.credentials} (0600)"
    print(f"# {enrollment.device_id}: {where}; user {status}")
    if registered is not None:
        from detpipe.io import write_json

        write_json(args.out / "registration.json", registered)
    return 0


def _register_device_key(args: argparse.Namespace) -> dict | None:
    """``--pubkey FILE --keys DIR``: register the device's key; ``--revoke``: remove it.

    Returns the registration written (None after --revoke).
    """
    from detpipe.edge.keys import load_signer
    from detpipe.edge.policy import check_device_id
    from detpipe.edge.reports import load_public_key, load_root, register, revoke, trusted_root
    from detpipe.edge.targets import check_device_class
    from detpipe.errors import InvalidInput
    from detpipe.store import open_store

    check_device_class(args.device_class)
    check_device_id(args.device_id)
    if args.revoke:
        if args.pubkey is not None or args.out is not None:
            raise InvalidInput("--revoke removes a registration: no --pubkey or --out with it")
        store = open_store(args.store)
        existed = revoke(store, args.device_class, args.device_id)
        state = "revoked" if existed else "was not enrolled"
        print(f"{args.device_id} ({args.device_class}): {state}; its reports no longer count")
        return None
    if args.pubkey is None or args.keys is None:
        raise InvalidInput(
            "--pubkey FILE and --keys DIR go together (the targets key signs the registration)"
        )
    key = load_public_key(args.pubkey)
    signer = load_signer(args.keys, "targets")
    store = open_store(args.store)
    root = trusted_root(store, anchor=load_root(args.keys / "root.json"))
    where = register(store, args.device_class, args.device_id, key, [signer], root)
    print(f"{args.device_id} ({args.device_class}): key {key.keyid[:16]} registered at {store.uri}/{where}")
    return json.loads(store.get_bytes(where))


def _register_fleet(edge: argparse._SubParsersAction) -> None:
    p = edge.add_parser(
        "fleet",
        help="a device class's state from its signed reports: versions, outcomes, failures, stale devices",
        description=textwrap.fill(
            "Read every devices/<id>/status.json of the store and count only the reports that verify: "
            "the device enrolled in the class (edge enroll --pubkey), its signature, a sequence number "
            "newer than the last one seen (kept in ota/fleet/<class>/seen.json). Prints devices per "
            "version and outcome, the failing devices with their errors, stale devices (no valid report "
            "for --stale), the ignored reports by reason (unsigned, forged, replayed, unenrolled, ...) "
            "and the inventory (TensorRT, JetPack, CUDA, compute capability). The trusted root is "
            "--trust, followed through the store's root chain; without it the store's 1.root.json. "
            "Exit 0; bad input 2; store failure 5.",
            width=88,
        ),
        epilog="example:\n"
        "  detpipe edge fleet --store s3://detpipe --device-class cpu --version 2 --stale 1h \\\n"
        "      --json fleet.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", required=True, help="store URI (s3://bucket[/prefix] or a directory)")
    p.add_argument("--device-class", required=True, help="the class to summarize")
    p.add_argument("--version", default=None, help="also count running / failed / pending on this version")
    p.add_argument(
        "--stale", type=duration, default=timedelta(hours=1), help="no valid report for this long (1h)"
    )
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the summary as JSON")
    p.add_argument(
        "--trust",
        type=existing_file,
        default=None,
        help="the fleet's root.json (default: the store's 1.root.json)",
    )
    p.set_defaults(func=_fleet)


def _fleet(args: argparse.Namespace) -> int:
    from detpipe.edge.fleet import fleet_status, format_table
    from detpipe.edge.reports import load_root, trusted_root
    from detpipe.edge.targets import check_device_class, check_version
    from detpipe.io import write_json
    from detpipe.store import open_store

    check_device_class(args.device_class)
    if args.version is not None:
        check_version(args.version)
    anchor = load_root(args.trust) if args.trust else None
    store = open_store(args.store)
    doc = fleet_status(store, args.device_class, trusted_root(store, anchor), version=args.version,
                       stale=args.stale)  # fmt: skip
    print(format_table(doc))
    if args.json is not None:
        write_json(args.json, doc)
    return 0
