"""The defaults of ``detpipe report``'s flags, import-free so that ``--help`` stays fast.

:mod:`detpipe.report.reproduction` (the gate) and :mod:`detpipe.cli.report` (the flags) both
take them from here.
"""

MAX_REL_DIFF_PCT = 3.5
"""The study's criterion: a reproduction within 3.5 % (relative) of the published mAP50-95."""
