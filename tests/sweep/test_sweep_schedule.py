"""Fixed and iteration-matched schedules of sweep cells."""

from __future__ import annotations

import pytest

from detpipe.errors import InvalidInput
from detpipe.sweep.schedule import ScheduleConfig, schedule, steps_per_epoch


def test_steps_per_epoch_keep_the_last_partial_batch():
    assert [steps_per_epoch(n, 16) for n in (1, 16, 17, 32)] == [1, 1, 2, 2]


def test_fixed_trains_every_cell_the_base_epochs():
    cfg = ScheduleConfig(policy="fixed", epochs=600, batch=16, warmup_epochs=3.0)
    plan = schedule(cfg, images=366, full_images=117_266)
    assert (plan.epochs, plan.warmup_epochs, plan.scale, plan.capped) == (600, 3.0, 1.0, False)
    assert plan.steps_per_epoch == 23


def test_iterations_match_the_optimizer_steps_of_the_full_set():
    cfg = ScheduleConfig(policy="iterations", epochs=6, batch=4, warmup_epochs=0.5)
    full = schedule(cfg, images=240, full_images=240)
    half = schedule(cfg, images=120, full_images=240)
    fifth = schedule(cfg, images=48, full_images=240)
    assert (full.epochs, full.scale, full.warmup_epochs) == (6, 1.0, 0.5)
    assert (half.epochs, half.scale, half.warmup_epochs, half.capped) == (12, 2.0, 1.0, False)
    assert (fifth.epochs, fifth.capped) == (30, False)
    # the same number of optimizer steps (before accumulation) in every cell
    assert {p.epochs * p.steps_per_epoch for p in (full, half, fifth)} == {360}


def test_iterations_are_capped_and_the_cap_is_flagged():
    cfg = ScheduleConfig(policy="iterations", epochs=600, batch=256, warmup_epochs=3.0, max_epochs_scale=10)
    plan = schedule(cfg, images=5_860, full_images=117_266)  # wants 459/23 = 20x
    assert (plan.epochs, plan.warmup_epochs, plan.scale, plan.capped) == (6000, 30.0, 10.0, True)


def test_rounding_keeps_the_warmup_share():
    cfg = ScheduleConfig(policy="iterations", epochs=3, batch=8, warmup_epochs=0.5)
    plan = schedule(cfg, images=30, full_images=149)  # 19 / 4 steps = 4.75x -> 14 epochs
    assert plan.epochs == 14
    assert plan.warmup_epochs == pytest.approx(0.5 * 14 / 3, abs=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "steps"}, "epochs_policy 'steps': choose from fixed, iterations"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch": -1}, "batch must be >= 1"),
        ({"max_epochs_scale": 0.5}, "max_epochs_scale must be >= 1"),
        ({"warmup_epochs": float("nan")}, "warmup_epochs must be >= 0"),
    ],
)
def test_bad_configs_are_refused(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        schedule(ScheduleConfig(**kwargs), images=10, full_images=100)


def test_a_cell_larger_than_the_full_set_is_refused():
    with pytest.raises(InvalidInput, match="1 <= images <= full images"):
        schedule(ScheduleConfig(), images=101, full_images=100)


def test_a_sweeps_warmup_comes_from_its_train_overrides():
    assert ScheduleConfig.for_training("iterations", 6, 4, {"warmup_epochs": 0.5}, 10).warmup_epochs == 0.5
    assert ScheduleConfig.for_training("fixed", 6, 4, {}, 10).warmup_epochs == 3.0  # ultralytics' default
    with pytest.raises(InvalidInput, match="warmup_epochs must be a number, got 'soon'"):
        ScheduleConfig.for_training("fixed", 6, 4, {"warmup_epochs": "soon"}, 10)
