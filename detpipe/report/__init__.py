"""The data-scaling report: how mAP falls as the training set shrinks, and how much data a target needs.

``detpipe report --runs DIR | --table CSV --out DIR [--target 0.4]`` reads one result per
(model, fraction[, seed]) and writes ``report.json``, ``report.md`` and PNG plots: the table of
best mAP50-95 per model x fraction, retention against the 100 % run, the cliff (the adjacent
step with the largest drop), late-peaking runs, and a saturating power-law fit per model.

The data a ``--target`` needs is the fit solved for N. Beyond the full set it is printed as
what it is, in the headline and in report.md: ``mAP 0.4 at ~37,798 % (extrapolated beyond
the full set: not reachable with this data)``; outside the fitted fractions but within the
full set, ``~4 % (extrapolated outside the fitted fractions)``
(:func:`~detpipe.report.sections.target_text`; report.json: ``extrapolated``, ``beyond_full_set``).

With several subset strategies, subset draws or epochs policies (issue 12), the main analysis
uses the primary strategy and policy and the report adds the strategy and policy comparisons,
the schedules, the variance across draws vs seeds, the draws' overlap, regimes and the runs
still improving.

Modules: :mod:`~detpipe.report.collect` (inputs and their validation, the train_summary.json
and cell.json keys), :mod:`~detpipe.report.select` (the primary strategy and policy),
:mod:`~detpipe.report.analysis` (retention, cliff, stability, regimes), :mod:`~detpipe.report.fit`
(power law), :mod:`~detpipe.report.compare` (strategies, policies, schedules),
:mod:`~detpipe.report.variance` (draws vs seeds, overlap.json), :mod:`~detpipe.report.render`
and :mod:`~detpipe.report.sections` (markdown), :mod:`~detpipe.report.plots` (PNGs),
:mod:`~detpipe.report.stage` (config and orchestration).

Usage::

    from detpipe.report.stage import ReportConfig, write_report
    write_report(ReportConfig(out=Path("runs/report"), table=Path("docs/report-example.csv")))
"""
