"""The pipeline's edge step: a signed release published to one device class, or a rollout started.

::

    spec = rollout_spec("5,25,100", min_reports=10)      # None for "": a plain publish
    out = publish_release("s3://detpipe", "s3://detpipe/models/yolo/3", "cpu", Path("ota-keys"),
                          release_key=Path("keys/release.pub"), rollout=spec)
    out.release.rollout_pct, out.rollout.action          # 5, "start"

Without a rollout the version is published at ``rollout_pct`` (``detpipe edge publish
--release``). With one it is published at the first step's percentage and the rollout
controller runs its first cycle (:mod:`detpipe.edge.controller`), which records the rollout's
state; ``detpipe edge rollout --once`` (the CronJob k8s/edge/controller/rollout-cronjob.yaml)
carries it on. A version whose rollout was aborted is never published again (that would undo
the signed rollback): publish a new version.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from detpipe.edge.controller import Controller, CycleResult, RolloutSpec, parse_steps, read_state
from detpipe.edge.publish import PublishConfig, artifact_from_release, publish_target
from detpipe.edge.targets import Release
from detpipe.errors import InvalidInput
from detpipe.signing import ReleaseVerifier
from detpipe.store import Store, open_store, read_manifest


@dataclass(frozen=True)
class EdgeRelease:
    """What the step did: the signed target, and the rollout's first cycle (None: a plain publish)."""

    release: Release
    rollout: CycleResult | None


def rollout_spec(
    steps: str, *, max_failure_pct: float = 5.0, min_reports: int = 1, bake_s: int = 1800
) -> RolloutSpec | None:
    """The rollout of ``steps`` (``"5,25,100"``: :func:`~detpipe.edge.controller.parse_steps`) and
    its gates; None for an empty ``steps`` (no rollout).

    Raises:
        InvalidInput: bad steps (not rising percentages ending at 100) or gates.
    """
    if not steps.strip():
        return None
    return RolloutSpec(
        steps=parse_steps(steps.strip()),
        max_failure_pct=max_failure_pct,
        min_reports=min_reports,
        bake=timedelta(seconds=bake_s),
    )


def publish_release(
    store_uri: str,
    release: str,
    device_class: str,
    keys: Path,
    *,
    release_key: Path | None,
    rollout_pct: int = 100,
    rollout: RolloutSpec | None = None,
    groups: tuple[str, ...] = (),
    expires: timedelta = timedelta(days=7),
) -> EdgeRelease:
    """Publish ``release``'s engine for ``device_class`` (else its ONNX) as a TUF target, version =
    the release's; with ``rollout``, at ``rollout.steps[0]`` and then the controller's first cycle.

    Args:
        store_uri: the fleet's store (OTA metadata, rollout state).
        release: the release URI (``s3://bucket/models/NAME/VERSION`` or a directory).
        device_class: the class published to.
        keys: the online OTA keys (targets/snapshot/timestamp ``.pem``) and ``root.json``.
        release_key: the release's public key (``release.pub``), checked before anything is
            downloaded; None: the release is taken unsigned (local development only).
        rollout_pct: the share of the class's devices that take it (without ``rollout``).
        rollout: start a rollout instead (its first step wins over ``rollout_pct``).
        groups: device groups that take it regardless of the percentage.
        expires: validity of the new metadata.

    Raises:
        InvalidInput: the version's rollout was aborted (publish a new version), bad keys.
        SignatureError: the release is not signed by ``release_key``'s key.
    """
    verifier = ReleaseVerifier(release_key) if release_key is not None else None
    version = read_manifest(release, verifier=verifier).version
    store = open_store(store_uri)
    state = read_state(store, device_class, version)
    _refuse_aborted(state, device_class, version)
    if rollout is None:
        pct: int | None = rollout_pct
    else:  # a started rollout (a retried step) keeps the share its controller signed
        pct = None if state else rollout.steps[0]
    with tempfile.TemporaryDirectory(prefix="edge-publish-") as work:
        artifact, fmt = artifact_from_release(
            release, device_class, Path(work), verifier=verifier, allow_unsigned=verifier is None
        )
        target = publish_target(
            store,
            PublishConfig(
                device_class=device_class,
                version=version,
                artifact=artifact,
                fmt=fmt,
                keys=keys,
                rollout_pct=pct,
                groups=groups,
                expires=expires,
            ),
        )
    if rollout is None:
        return EdgeRelease(target, None)
    return EdgeRelease(target, start_rollout(store, device_class, version, keys, rollout))


def start_rollout(
    store: Store, device_class: str, version: str, keys: Path, spec: RolloutSpec
) -> CycleResult:
    """The controller's first cycle for a published ``version`` (a later one for a started rollout)."""
    return Controller(store, device_class, version, keys, spec).run_once()


def _refuse_aborted(state: dict | None, device_class: str, version: str) -> None:
    if state is not None and state["status"] == "aborted":
        raise InvalidInput(
            f"the rollout of {device_class} {version} was aborted at {state['pct']}% (signed rollback): "
            "it is not published again; publish a new version"
        )
