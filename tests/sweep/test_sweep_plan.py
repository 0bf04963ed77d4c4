"""The sweep plan: grid x strategies x subset draws, each cell with its schedule."""

from __future__ import annotations

import pytest

from detpipe.errors import InvalidInput
from detpipe.pipelines.small_data_sweep import sweep_grid
from detpipe.sweep import ScheduleConfig, plan_cells, subset_sizes

SIZES = {
    (s, pct): n
    for s in ("p", "random", "topn")
    for pct, n in (("5", 12), ("10", 24), ("20", 48), ("100", 240))
}


def _plan(grid, strategies=("p",), seeds=(0,), **schedule):
    return plan_cells(grid, strategies, seeds, SIZES, ScheduleConfig(**{"epochs": 6, "batch": 4, **schedule}))


def test_the_default_plan_is_the_grid():
    grid = sweep_grid(models=("yolov8n.yaml",), fractions=(5, 100), seeds=(0, 1))
    cells = _plan(grid)
    assert [(c["fraction"], c["seed"], c["strategy"], c["subset_seed"]) for c in cells] == [
        (5.0, 0, "p", 0),
        (5.0, 1, "p", 0),
        (100.0, 0, "p", 0),
    ]
    assert {c["epochs"] for c in cells} == {6}
    assert cells[0]["model"] == "yolov8n" and cells[0]["images"] == 12 and cells[0]["steps_per_epoch"] == 3


def test_strategies_and_draws_cross_the_grid_where_draws_differ():
    grid = sweep_grid(models=("yolov8n.yaml",), fractions=(5, 100), seeds=(0,))
    cells = _plan(grid, strategies=("p", "random", "topn"), seeds=(0, 1, 2))
    got = [(c["fraction"], c["strategy"], c["subset_seed"]) for c in cells]
    assert got == [
        (5.0, "p", 0),
        (5.0, "p", 1),
        (5.0, "p", 2),
        (5.0, "random", 0),
        (5.0, "random", 1),
        (5.0, "random", 2),
        (5.0, "topn", 0),  # topn does not depend on the seed
        (100.0, "p", 0),  # every draw of the full set is the full set
        (100.0, "random", 0),
        (100.0, "topn", 0),
    ]


def test_iterations_policy_schedules_each_cell():
    grid = sweep_grid(models=("yolov8n.yaml",), fractions=(5, 20, 100), seeds=(0,))
    cells = plan_cells(
        grid, ["p"], [0], SIZES, ScheduleConfig(policy="iterations", epochs=6, batch=4, warmup_epochs=0.5)
    )
    by = {c["fraction"]: c for c in cells}
    assert by[100.0]["epochs"] == 6 and by[20.0]["epochs"] == 30
    assert by[5.0]["epochs"] == 60 and by[5.0]["capped"] is True  # wants 20x, capped at 10x
    assert all(c["epochs_policy"] == "iterations" for c in cells)
    assert by[20.0]["warmup_epochs"] == 2.5


ONE = [{"arch": "yolov8n.yaml", "fraction": 5.0, "seed": 0}]


@pytest.mark.parametrize(
    ("grid", "strategies", "seeds", "message"),
    [
        ([{**ONE[0], "fraction": 7.0}], ["p"], [0], "no p subset at 7 %; the subsets have 5, 10, 20, 100"),
        (ONE, ["best"], [0], "unknown 'best'"),
        (ONE, [], [0], "strategies: give at least one"),
        (ONE, ["p"], [], "subset_seeds: give at least one"),
        (ONE, ["p"], [0.5], "0.5 is not an integer"),
        ([{"arch": "yolov8n.yaml", "fraction": 5.0}], ["p"], [0], "with arch, fraction and seed"),
        ([{"arch": "yolov8n.yaml", "fraction": 150, "seed": 0}], ["p"], [0], "outside \\(0, 100\\]"),
        ([], ["p"], [0], "the grid is empty"),
    ],
)
def test_bad_plans_are_refused_before_anything_trains(grid, strategies, seeds, message):
    with pytest.raises(InvalidInput, match=message):
        plan_cells(grid, strategies, seeds, SIZES, ScheduleConfig(epochs=6, batch=4))


def test_subset_sizes_reads_a_subsets_summary():
    rows = [{"strategy": "p", "pct": 0.3125, "images": 1}, {"strategy": "p", "pct": 100, "images": 9}]
    summary = {"subsets": rows}
    assert subset_sizes(summary) == {("p", "0.3125"): 1, ("p", "100"): 9}
    with pytest.raises(InvalidInput, match="not a detpipe subsets summary"):
        subset_sizes({"lists": []})
