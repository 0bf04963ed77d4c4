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
) -> str:
    """Publish ``release`` to the edge fleet of ``device_class`` (``detpipe edge publish --release``).

    The release's ``engines/<device_class>/model.engine`` is published when it has one (its
    sidecar's TensorRT/GPU compatibility goes into the signed metadata), else its
    ``model.onnx`` (devices build the engine themselves, or serve ONNX on CPU). The version is
    the release's. ``keys_dir`` holds the online keys (``targets.pem``, ``snapshot.pem``,
    ``timestamp.pem``) and ``root.json``: on the cluster the ``detpipe-edge-keys`` Secret mounted
    as files, never a parameter's value; ``root.pem`` stays offline. ``release_key_dir`` holds
    ``release.pub``: the release's signature is checked before anything of it is downloaded or
    signed for the fleet (on the cluster the publish step's signing Secret, mounted as files);
    empty: the release is taken unsigned, with a warning (local development only). Returns the
    target path; an empty ``device_class`` publishes nothing and returns ``""`` (the step is off).
    """
    import tempfile
    from datetime import timedelta
    from pathlib import Path

    from detpipe.edge.publish import PublishConfig, artifact_from_release, publish_target
    from detpipe.signing import ReleaseVerifier
    from detpipe.signing.keys import PUBLIC_KEY
    from detpipe.store import open_store, read_manifest

    if not device_class:
        published.metadata["skipped"] = "edge_device_class is empty"
        Path(published.path).parent.mkdir(parents=True, exist_ok=True)
        Path(published.path).write_text("")
        return ""
    verifier = ReleaseVerifier(Path(release_key_dir) / PUBLIC_KEY) if release_key_dir else None
    version = read_manifest(release, verifier=verifier).version
    with tempfile.TemporaryDirectory(prefix="edge-publish-") as work:
        artifact, fmt = artifact_from_release(
            release, device_class, Path(work), verifier=verifier, allow_unsigned=verifier is None
        )
        target = publish_target(
            open_store(store),
            PublishConfig(
                device_class=device_class,
                version=version,
                artifact=artifact,
                fmt=fmt,
                keys=Path(keys_dir),
                rollout_pct=rollout_pct,
                groups=tuple(groups),
                expires=timedelta(days=expires_days),
            ),
        )
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
    Path(published.path).parent.mkdir(parents=True, exist_ok=True)
    Path(published.path).write_text(target.path + "\n")
    return target.path
