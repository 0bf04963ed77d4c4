"""Active learning, measured: does a selection strategy need fewer labels than random picks?

One *cell* is one strategy with one seed: a labeled seed set (``seed_fraction`` % of the
training set, drawn proportionally like the subsets), then ``rounds`` rounds of pick ``budget``
images from the rest (:mod:`detpipe.mine`), reveal their ground truth (the oracle a labeling
team would be), merge them in (:mod:`detpipe.data.merge`), retrain and evaluate on the fixed
validation set. The report compares the cells' curves (mAP50-95 against labeled images, mean ±
std across seeds) with the random baseline and the power law a data-scaling sweep fitted.

- :mod:`.config`: the cell's settings (:class:`~.config.CellConfig`);
- :mod:`.labeled`: the seed set, the oracle, the merge;
- :mod:`.cell`: one cell's rounds (``run_cell``);
- :mod:`.records`: the per-round records and where they are filed;
- :mod:`.stats`: mean ± std, where a curve reaches a mAP, the label saving and its uncertainty;
- :mod:`.report` / :mod:`.plots`: the report (JSON, markdown, HTML, the curves PNG).

Nothing is imported here, so the CLI starts fast.
"""
