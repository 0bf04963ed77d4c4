"""The edge-publish step: the release's engine (or ONNX) as a TUF-signed OTA target for a device class."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def edge_publish_op(
    release: str,
    store: str,
    device_class: str,
    keys_dir: str,
    published: Output[Artifact],
    rollout_pct: int = 100,
    groups: list = [],  # noqa: B006
    expires_days: int = 7,
    release_key_dir: str = "",
    rollout_steps: str = "",
    rollout_max_failure_pct: float = 5.0,
    rollout_min_reports: int = 1,
    rollout_bake_s: int = 1800,
) -> str:
    """Publish ``release`` to the edge fleet of ``device_class`` (``detpipe edge publish --release``),
    or start a rollout of it (:func:`detpipe.edge.release_step.publish_release`).

    The release's ``engines/<device_class>/model.engine`` is published when it has one (its
    sidecar's TensorRT/GPU compatibility goes into the signed metadata), else its
    ``model.onnx`` (devices build the engine themselves, or serve ONNX on CPU). The version is
    the release's. ``keys_dir`` holds the online keys (``targets.pem``, ``snapshot.pem``,
    ``timestamp.pem``) and ``root.json``: on the cluster the ``detpipe-edge-keys`` Secret mounted
    as files, never a parameter's value; ``root.pem`` stays offline. ``release_key_dir`` holds
    ``release.pub``: the release's signature is checked before anything of it is downloaded or
    signed for the fleet (on the cluster the publish step's signing Secret, mounted as files);
    empty: the release is taken unsigned, with a warning (local development only).
    ``rollout_steps`` (``"5,25,100"``; empty: off) starts a progressive rollout instead of
    publishing at ``rollout_pct``: the version at the first step, then the controller's first
    cycle, which records the rollout's state with these gates (``detpipe edge rollout --once``,
    the CronJob, carries it on). Returns the target path; an empty ``device_class`` publishes
    nothing and returns ``""`` (the step is off).
    """
    from datetime import timedelta
    from pathlib import Path

    from detpipe.edge.release_step import publish_release, rollout_spec
    from detpipe.signing.keys import PUBLIC_KEY

    out = Path(published.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not device_class:
        published.metadata["skipped"] = "edge_device_class is empty"
        out.write_text("")
        return ""
    spec = rollout_spec(
        rollout_steps,
        max_failure_pct=rollout_max_failure_pct,
        min_reports=rollout_min_reports,
        bake_s=rollout_bake_s,
    )  # bad steps fail the step before anything is read
    done = publish_release(
        store,
        release,
        device_class,
        Path(keys_dir),
        release_key=Path(release_key_dir) / PUBLIC_KEY if release_key_dir else None,
        rollout_pct=rollout_pct,
        rollout=spec,
        groups=tuple(groups),
        expires=timedelta(days=expires_days),
    )
    target = done.release
    published.metadata.update(
        {
            "target": target.path,
            "version": target.version,
            "format": target.format,
            "sha256": target.sha256,
            "rollout_pct": target.rollout_pct,
            "groups": list(target.groups),
        }
    )
    if done.rollout is not None:
        published.metadata["rollout"] = done.rollout.to_dict()
    out.write_text(target.path + "\n")
    return target.path
