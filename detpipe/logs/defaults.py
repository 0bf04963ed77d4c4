"""The defaults of ``detpipe logs analyze``'s flags, import-free so that ``--help`` stays fast.

:mod:`detpipe.logs.analysis` (the rules) and :mod:`detpipe.cli.logs` (the flags) both take them
from here; the analysis' other constants live with the rules.
"""

DEFAULT_RANGES = ((1, 10), (11, 30), (31, 60), (61, 100), (101, 200), (201, 300), (301, 600))
"""detpipe's choice: short ranges while the curves move fast, longer ones later (the study
split its 300-epoch runs by hand at similar points); clipped to each run's epochs."""
DEFAULT_MILESTONES = (1, 5, 10, 25, 50, 100, 150, 200, 250, 300)
"""detpipe's choice: epochs at which the metrics are tabulated (those a run reached)."""
STABLE_WINDOW = 10
"""detpipe's choice: epochs per window for the stability rule."""
STABLE_COV_PCT = 0.5
"""The study's figure: a mAP50 CoV of 0.4-0.5 % is what it calls stable; the stability
threshold never exceeds it (``--stable-cov``)."""
SPIKE_FACTOR = 1.25
"""detpipe's choice: a loss 25 % above its recent median is a spike."""
