"""The report step of the data-scaling sweep."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def report_op(
    runs: str,
    report: Output[Artifact],
    page: Output[HTML],
    summary: Output[Markdown],
    target: float = 0.4,
    strategy: str = "",
    epochs_policy: str = "",
    fit_min_fraction: float = 0.0,
) -> None:
    """Build the data-scaling report (table, retention, cliff, power-law fit, strategy and
    epochs-policy comparisons, variance across subset draws vs seeds, plots) from ``runs``.

    ``runs`` is a directory or store URI prefix holding the sweep's cells (``train_summary.json``,
    ``cell.json``, ``logs/analysis.json``, which the report links) and ``subsets/overlap.json``
    (the overlap between subset draws, filed by the plan step). ``strategy`` and
    ``epochs_policy`` choose the main analysis' (empty: ``p`` and ``fixed`` when present);
    ``fit_min_fraction`` > 0 fits the power law to the fractions from it up only (0: all).

    ``report`` holds ``report.json``, ``report.md``, ``report.html`` and the PNGs. What the run
    shows: ``page``, the report as one self-contained HTML page (plots embedded as ``data:``
    URIs), and ``summary``, its tables as markdown (the plots are in the page).
    """
    import tempfile
    from pathlib import Path

    from detpipe.io import write_bytes, write_text
    from detpipe.report.render import render_markdown
    from detpipe.report.stage import ReportConfig, write_report
    from detpipe.store import open_store

    # Per-cell files the report reads (contract 2 of issue 12), the log analyses it links, and
    # the draws' overlap table the plan step files under runs (the report finds it there).
    cell_files = ("/train_summary.json", "/cell.json", "/logs/analysis.json", "/logs/analysis.md")
    subsets_files = ("subsets/overlap.json",)
    local = Path(runs.removeprefix("file://"))
    if "://" in runs and not runs.startswith("file://"):
        store = open_store(runs)
        local = Path(tempfile.mkdtemp(prefix="detpipe-runs-"))
        for key in store.list(""):
            if ("/" + key).endswith(cell_files) or key in subsets_files:
                store.get_file(key, local / key)
    result = write_report(
        ReportConfig(
            runs=local,
            out=Path(report.path),
            target=target,
            strategy=strategy or None,
            epochs_policy=epochs_policy or None,
            fit_min_fraction=fit_min_fraction or None,
        )
    )
    write_bytes(page.path, (Path(report.path) / "report.html").read_bytes())
    write_text(summary.path, render_markdown(result))
