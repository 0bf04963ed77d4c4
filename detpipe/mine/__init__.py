"""Pick the pool images worth labeling: ``detpipe mine`` (uncertainty, entropy, diversity, random).

:mod:`.pool` lists the pool (a directory or a store prefix), :mod:`.scores` scores images per
strategy, :mod:`.stage` runs the model over the pool and writes the selection, pre-annotations
and a contact sheet (``from detpipe.mine.stage import MineConfig, mine``). Nothing is imported
here, so that the CLI can read :data:`detpipe.mine.strategy.STRATEGIES` at start for free.
"""
