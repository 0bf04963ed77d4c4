"""The fleet rollout controller: progressive, health-gated OTA rollouts that stop themselves.

``detpipe edge rollout`` moves a published version through rollout steps (5 → 25 → 100 %),
each gated on the devices' signed reports, and aborts with a signed rollback when too many
fail. :mod:`.state` owns the state document and the controllers' turn-taking, :mod:`.judge`
the counting and the decision, :mod:`.cycle` one run::

    from detpipe.edge.controller import Controller, RolloutSpec
    result = Controller(store, "cpu", "2", keys=Path("ota-keys"), spec=RolloutSpec()).run_once()
"""

from detpipe.edge.controller.cycle import (
    ABORTED_EXIT,
    Controller,
    CycleResult,
    RolloutSpec,
    parse_steps,
    pause,
    resume,
)
from detpipe.edge.controller.judge import Counts, count, decide
from detpipe.edge.controller.state import lock_key, read_state, state_key

__all__ = [
    "ABORTED_EXIT",
    "Controller",
    "Counts",
    "CycleResult",
    "RolloutSpec",
    "count",
    "decide",
    "lock_key",
    "parse_steps",
    "pause",
    "read_state",
    "resume",
    "state_key",
]
