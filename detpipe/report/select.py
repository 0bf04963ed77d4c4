"""The main analysis' runs: one subset strategy and one epochs policy among those run.

Issue 12 lets a sweep train several subset strategies (``p``, ``random``, ``topn``) and two
epochs policies (``fixed``, ``iterations``). The table, retention, cliff, fit, stability,
regimes and variance are about one curve per model, so they use the *primary* strategy and
policy; :mod:`detpipe.report.compare` sets the others beside it.

Usage::

    selection = select_primary(runs, strategy=None, policy=None)   # p and fixed when present
    groups = group_runs(selection.runs)
    selection.notes    # ("the main analysis uses subset strategy 'p' (also present: random; ...)",)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace

from detpipe.errors import InvalidInput
from detpipe.report.collect import Run, check_unique

log = logging.getLogger(__name__)

PRIMARY_STRATEGY = "p"
"""The main analysis uses the study's own strategy, ``p``, when it is present."""
PRIMARY_POLICY = "fixed"
"""... and the study's own schedule, the same epochs at every fraction, when it is present."""


def choose_primary(values: Iterable[str | None], chosen: str | None, preferred: str, what: str) -> str | None:
    """The value the main analysis uses: ``chosen``, else ``preferred`` when present, else the
    first present one alphabetically (None when no run says).

    Raises:
        InvalidInput: ``chosen`` matches no run.
    """
    present = sorted({v for v in values if v is not None})
    if chosen is not None:
        if chosen not in present:
            raise InvalidInput(f"no runs with {what} {chosen!r} (present: {', '.join(present) or 'none'})")
        return chosen
    if preferred in present:
        return preferred
    return present[0] if present else None


@dataclass(frozen=True)
class Selection:
    """The runs of the main analysis and how they were chosen.

    Attributes:
        runs: Runs at the primary strategy and the primary epochs policy.
        everything: All runs, runs of unknown strategy/policy taking the primary one unless
            it was chosen explicitly (then they are left out of ``runs``, as they are here).
        strategy: The primary subset strategy (None when no run says).
        policy: The primary epochs policy (None when no run says).
        strategies: Every strategy present, sorted.
        policies: Every policy present, sorted.
        notes: What the selection left out, for the report's notes.
    """

    runs: list[Run]
    everything: list[Run]
    strategy: str | None
    policy: str | None
    strategies: list[str]
    policies: list[str]
    notes: tuple[str, ...]


def select_primary(runs: list[Run], strategy: str | None, policy: str | None) -> Selection:
    """Pick the primary subset strategy and epochs policy and the runs at both.

    Without a choice the primary strategy is ``p`` when present, else the first present
    alphabetically; the primary policy ``fixed`` when present, else the only one. A run that
    does not say its strategy (or policy) counts as the primary one unless one was chosen.

    Raises:
        InvalidInput: A chosen strategy or policy matches no run; a group's runs share
            (seed, subset_seed) (see :func:`check_unique`).
    """
    primary_strategy = choose_primary(
        (r.strategy for r in runs), strategy, PRIMARY_STRATEGY, "subset strategy"
    )
    primary_policy = choose_primary((r.epochs_policy for r in runs), policy, PRIMARY_POLICY, "epochs policy")
    everything = [
        replace(
            r,
            strategy=r.strategy if r.strategy is not None or strategy is not None else primary_strategy,
            epochs_policy=r.epochs_policy
            if r.epochs_policy is not None or policy is not None
            else primary_policy,
        )
        for r in runs
    ]
    check_unique(everything)
    kept = [r for r in everything if r.strategy == primary_strategy and r.epochs_policy == primary_policy]
    strategies = sorted({r.strategy for r in everything if r.strategy is not None})
    policies = sorted({r.epochs_policy for r in everything if r.epochs_policy is not None})
    notes = []
    if len(strategies) > 1:
        others = ", ".join(s for s in strategies if s != primary_strategy)
        notes.append(
            f"the main analysis uses subset strategy {primary_strategy!r} (also present: {others}; "
            "see Strategies; choose with --strategy)"
        )
    if len(policies) > 1:
        others = ", ".join(p for p in policies if p != primary_policy)
        notes.append(
            f"the main analysis uses epochs policy {primary_policy!r} (also present: {others}; "
            "see Epochs policies; choose with --epochs-policy)"
        )
    missing = sorted({r.model for r in everything} - {r.model for r in kept})
    if missing and kept:
        notes.append(
            f"{', '.join(missing)}: no runs at subset strategy {primary_strategy!r} and epochs policy "
            f"{primary_policy!r}; shown only in the comparisons"
        )
    left = len(runs) - len(kept)
    log.info(
        "main analysis: %d runs (strategy %s, policy %s; %d others)",
        len(kept),
        primary_strategy,
        primary_policy,
        left,
    )
    return Selection(
        runs=kept,
        everything=everything,
        strategy=primary_strategy,
        policy=primary_policy,
        strategies=strategies,
        policies=policies,
        notes=tuple(notes),
    )
