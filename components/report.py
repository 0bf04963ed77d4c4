"""The report step of the data-scaling sweep."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def report_op(runs: str, report: Output[Artifact], target: float = 0.4) -> None:
    """Build the data-scaling report (table, retention, cliff, power-law fit, plots) from ``runs``.

    ``runs`` is a directory or store URI prefix holding the sweep's ``train_summary.json`` files
    (and each cell's ``logs/analysis.json``, which the report links).
    """
    import tempfile
    from pathlib import Path

    from detpipe.report.build import ReportConfig, write_report
    from detpipe.store import open_store

    local = Path(runs)
    if "://" in runs and not runs.startswith("file://"):
        store = open_store(runs)
        local = Path(tempfile.mkdtemp(prefix="detpipe-runs-"))
        for key in store.list(""):
            if key.endswith(("train_summary.json", "/logs/analysis.json", "/logs/analysis.md")):
                store.get_file(key, local / key)
    write_report(ReportConfig(runs=local, out=Path(report.path), target=target))
