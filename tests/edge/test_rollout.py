"""Staged-rollout rules (pure functions): buckets, groups, never down without a signed rollback."""

from __future__ import annotations

import pytest

from detpipe.edge.layout import target_key
from detpipe.edge.rollout import admitted, bucket, choose
from detpipe.edge.targets import Release, check_pct, target_path
from detpipe.errors import InvalidInput


def rel(
    version: str, pct: int = 100, groups: tuple[str, ...] = (), rollback: bool = False, cls: str = "cpu"
) -> Release:
    return Release(
        path=target_path(cls, version, "onnx"),
        version=version,
        device_class=cls,
        format="onnx",
        sha256=f"{version:0>64}",
        length=10,
        rollout_pct=pct,
        groups=groups,
        rollback=rollback,
    )


def test_bucket_is_stable_uniform_and_independent_per_version():
    devices = [f"cam-{i}" for i in range(4000)]
    b1 = [bucket(d, "1") for d in devices]
    assert b1 == [bucket(d, "1") for d in devices]  # stable
    assert all(0 <= b < 100 for b in b1)
    share = sum(b < 10 for b in b1) / len(devices)
    assert 0.08 < share < 0.12  # 10 % of a fleet, within sampling noise (sd 0.5 %)
    b2 = [bucket(d, "2") for d in devices]
    both = sum(x < 10 and y < 10 for x, y in zip(b1, b2, strict=True)) / len(devices)
    assert both < 0.03  # version 2's 10 % is a different 10 %


def test_raising_the_percentage_only_adds_devices():
    devices = [f"d{i}" for i in range(500)]
    at10 = {d for d in devices if admitted(rel("3", 10), d)}
    at50 = {d for d in devices if admitted(rel("3", 50), d)}
    assert at10 < at50
    assert not any(admitted(rel("3", 0), d) for d in devices)
    assert all(admitted(rel("3", 100), d) for d in devices)


def test_groups_admit_regardless_of_percentage():
    assert admitted(rel("3", 0, groups=("canary",)), "any", groups=("canary",))
    assert not admitted(rel("3", 0, groups=("canary",)), "any", groups=("site-7",))


def test_choose_takes_the_newest_admitted_version_of_the_class():
    releases = [rel("1"), rel("2"), rel("10"), rel("11", cls="orin-sm87-trt10.3.0")]
    d = choose(releases, "cpu", "cam-1", installed="1", installed_sha256=rel("1").sha256)
    assert (d.action, d.release.version) == ("install", "10")  # 10 > 2 (release version order)


def test_choose_keeps_the_installed_version():
    d = choose([rel("1"), rel("2")], "cpu", "cam-1", installed="2", installed_sha256=rel("2").sha256)
    assert d.action == "keep" and "up to date" in d.reason


def test_never_down_a_version_without_a_signed_rollback():
    # the device got 3 in a 100 % rollout, then 3 was withdrawn to 0 %: it stays on 3
    d = choose([rel("2"), rel("3", 0)], "cpu", "cam-1", installed="3", installed_sha256=rel("3").sha256)
    assert d.action == "keep" and "no signed rollback" in d.reason
    d = choose([rel("2", rollback=True)], "cpu", "cam-1", installed="3", installed_sha256=rel("3").sha256)
    assert (d.action, d.reason, d.release.version) == ("install", "rollback", "2")


def test_refused_targets_are_not_retried():
    d = choose(
        [rel("1"), rel("2")],
        "cpu",
        "cam-1",
        installed="1",
        installed_sha256=rel("1").sha256,
        refused=[rel("2").sha256],
    )
    assert d.action == "keep"


def test_other_classes_and_empty_repositories():
    assert choose([rel("1", cls="orin")], "cpu", "x").reason == "no target for device class cpu"
    assert "not in any rollout" in choose([rel("1", 0)], "cpu", "x").reason


def test_names_and_keys():
    assert target_path("cpu", "1.2.0", "engine") == "cpu/1.2.0/model.engine"
    assert target_key("cpu/3/model.onnx", "ab" * 32) == f"ota/targets/cpu/3/{'ab' * 32}.model.onnx"
    for bad in ("CPU", "../x", "a/b", ""):
        with pytest.raises(InvalidInput):
            target_path(bad, "1", "onnx")
    for bad in (-1, 101, 50.5, True):
        with pytest.raises(InvalidInput):
            check_pct(bad)
