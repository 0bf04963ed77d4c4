"""Training-log analysis: what ultralytics' results.csv says about how a run trained.

``detpipe logs analyze RUN_DIR... --out DIR`` reads each run's results.csv (and args.yaml /
train_summary.json / weights beside it) and writes ``analysis.json``, ``analysis.md`` and PNG
plots: losses and their drops per epoch range, metric milestones and range statistics, the
epoch from which training is stable, spikes and oscillations, learning-rate phases, time per
epoch, a status with its reason, and with several runs a comparison with the winners.

Modules: :mod:`~detpipe.logs.runlog` (reading a run directory), :mod:`~detpipe.logs.analysis`
(the rules), :mod:`~detpipe.logs.compare` (several runs), :mod:`~detpipe.logs.render`
(markdown), :mod:`~detpipe.logs.plots` (PNGs), :mod:`~detpipe.logs.stage` (config, outputs).

Usage::

    from detpipe.logs.stage import LogsConfig, write_analysis
    write_analysis(LogsConfig(runs=(Path("runs/yolo12n_5p"),), out=Path("runs/logs")))
"""
