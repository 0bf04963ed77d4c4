"""Fraction arithmetic, names and configuration checks of ``detpipe subsets``."""

from __future__ import annotations

import pytest

from detpipe.errors import InvalidInput
from detpipe.subsets.config import (
    DEFAULT_FRACTIONS,
    SubsetsConfig,
    default_prefix,
    format_pct,
    list_name,
    split_name,
    subset_size,
)


@pytest.mark.parametrize(
    ("pct", "total", "expected"),
    [
        (0.3125, 117_266, 366),  # 366.45625
        (0.625, 117_266, 733),  # 732.9125
        (1.25, 117_266, 1466),  # 1465.825
        (10, 117_266, 11727),  # 11726.6
        (100, 117_266, 117_266),
        (2.5, 20, 1),  # exactly 0.5: rounds half up
        (50, 3, 2),  # 1.5 -> 2
        (30, 5, 2),  # 1.5 -> 2 (0.3 is not exact in binary; the decimal is used)
        (70, 5, 4),  # 3.5 -> 4
        (0.3125, 10, 1),  # 0.03125 -> at least one image
        (90, 1, 1),
    ],
)
def test_subset_size_rounds_half_up_at_least_one(pct, total, expected):
    assert subset_size(pct, total) == expected


def test_default_fractions_are_the_studys():
    assert DEFAULT_FRACTIONS == (0.3125, 0.625, 1.25, 2.5, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


@pytest.mark.parametrize(
    ("pct", "text"),
    [(0.3125, "0.3125"), (0.625, "0.625"), (5.0, "5"), (100, "100"), (12.5, "12.5"), (1e-3, "0.001")],
)
def test_format_pct_is_minimal(pct, text):
    assert format_pct(pct) == text


def test_names_and_prefix():
    assert split_name("data/annotations/instances_train2017.json") == "train2017"
    assert split_name("instances_val2017.json") == "val2017"
    assert split_name("coco_subset.json") == "train2017"
    assert default_prefix("val2017") == "./images/val2017/"
    assert list_name("train2017", 0.3125, "p") == "train2017_0.3125_p.txt"
    assert list_name("train2017", 100.0, "topn") == "train2017_100_topn.txt"


def test_checked_sorts_and_dedups():
    cfg = SubsetsConfig("a.json", "out", fractions=(5, 0.3125, 5.0), strategies=("random", "p", "random"))
    checked = cfg.checked()
    assert checked.fractions == (0.3125, 5.0)
    assert checked.strategies == ("random", "p")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fractions": (0,)}, "fraction 0 is outside (0, 100]"),
        ({"fractions": (101,)}, "fraction 101 is outside (0, 100]"),
        ({"fractions": ()}, "no fractions given"),
        ({"strategies": ("p", "stratified")}, "unknown strategy 'stratified'"),
    ],
)
def test_checked_rejects(kwargs, message):
    with pytest.raises(
        InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")
    ):
        SubsetsConfig("a.json", "out", **kwargs).checked()
