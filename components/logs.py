"""The training-log step: ``detpipe logs analyze`` on a trained model's run directory."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def logs_op(
    model: Input[Model],
    analysis: Output[Artifact],
    metrics: Output[Metrics],
    page: Output[HTML],
    cell: str = "",
) -> None:
    """Analyze the run's ``results.csv`` (losses, ranges, stable epoch, spikes, LR phases, status).

    The artifact holds ``analysis.json``, ``analysis.md`` and the PNGs. With ``cell`` (a sweep
    cell's directory or store URI, as the record step returns it) they are also filed under
    ``<cell>/logs/``, where the sweep's report finds and links them. What the run shows:
    ``page``, ``analysis.md`` as one self-contained HTML page (plots embedded).
    """
    from pathlib import Path

    from detpipe.logs.stage import LogsConfig, write_analysis
    from detpipe.report.html import write_page
    from detpipe.store import open_store

    out = Path(analysis.path)
    result = write_analysis(LogsConfig(runs=(Path(model.path),), out=out))
    (run,) = result["runs"].values()
    if run["stable_epoch"] is not None:
        metrics.log_metric("stable_epoch", run["stable_epoch"])
    if run["time"]["sec_per_epoch_median"] is not None:
        metrics.log_metric("sec_per_epoch", run["time"]["sec_per_epoch_median"])
    analysis.metadata.update({"status": run["status"], "reason": run["reason"]})
    write_page(out / "analysis.md", Path(page.path))
    if cell:
        store = open_store(cell)
        for path in sorted(out.iterdir()):
            store.put_file(f"logs/{path.name}", path)
