"""The data-scaling report: how mAP falls as the training set shrinks, and how much data a target needs.

``detpipe report --runs DIR | --table CSV --out DIR [--target 0.4]`` reads one result per
(model, fraction[, seed]) and writes ``report.json``, ``report.md`` and PNG plots: the table of
best mAP50-95 per model x fraction, retention against the 100 % run, the cliff (the adjacent
step with the largest drop), late-peaking runs, and a saturating power-law fit per model.

Modules: :mod:`~detpipe.report.collect` (inputs and their validation, the train_summary.json
keys), :mod:`~detpipe.report.analysis` (retention, cliff, stability), :mod:`~detpipe.report.fit`
(power law), :mod:`~detpipe.report.render` (markdown), :mod:`~detpipe.report.plots` (PNGs),
:mod:`~detpipe.report.build` (config and orchestration).

Usage::

    from detpipe.report.build import ReportConfig, write_report
    write_report(ReportConfig(out=Path("runs/report"), table=Path("docs/report-example.csv")))
"""
