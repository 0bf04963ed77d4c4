"""The deploy step: a canary of the new release (Argo Rollouts, Gateway API or KServe)."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def deploy_op(
    release: str,
    manifests: Output[Artifact],
    strategy: str = "rollout",
    namespace: str = "detpipe",
    steps: list = [10, 50, 100],  # noqa: B006
    pause: str = "10m",
    dry_run: bool = True,
    enabled: bool = True,
) -> None:
    """Render the canary of ``release`` (``detpipe deploy canary``) and, unless ``dry_run``, apply it.

    The objects (Rollout + Services + AnalysisTemplates; Deployments + HTTPRoute; or, with
    ``strategy="kserve"``, ServiceAccount + ServingRuntime + InferenceService) are stored as
    ``canary.yaml`` in ``manifests`` either way; a run without a cluster (kfp.local) renders
    only. On a cluster the step applies them with the run's service account (``detpipe-pipeline``,
    bound to the ``detpipe-deploy`` Role of k8s/serving/deploy-rbac.yaml, and for KServe the Role
    of k8s/serving/kserve/); the analysis and the promotion then belong to Argo Rollouts, or to
    ``detpipe deploy promote`` / ``canary --strategy kserve --auto`` (Gateway API, KServe).
    ``enabled=False`` does nothing (the local pipeline's stand-in for the cluster's ``dsl.If``).
    """
    from pathlib import Path

    if not enabled:
        manifests.metadata.update({"applied": False, "skipped": "deploy is off"})
        return

    from detpipe.deploy.canary import roll_out, write_manifests
    from detpipe.deploy.config import CanaryConfig

    cfg = CanaryConfig(
        model_uri=release,
        strategy=strategy,
        namespace=namespace,
        steps=tuple(int(s) for s in steps),
        pause=pause,
    )
    docs = roll_out(cfg, dry_run=dry_run)
    out = Path(manifests.path)
    out.mkdir(parents=True, exist_ok=True)
    write_manifests(docs, out / "canary.yaml")
    manifests.metadata.update(
        {
            "strategy": strategy,
            "model": cfg.model_name,
            "version": cfg.version,
            "objects": [f"{d['kind']}/{d['metadata']['name']}" for d in docs],
            "applied": not dry_run,
        }
    )
