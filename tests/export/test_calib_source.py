"""INT8 calibration draws from the smallest nested subset list holding the images asked for
(the bug: the pipeline used the fixed 5 % list, 7 images in the quick profile, and capped
``calib_images`` silently); fewer existing images is a warning, never a silent cap."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from detpipe.errors import InvalidInput
from detpipe.export.calib import calibration_images, calibration_list


@pytest.fixture
def lists(tmp_path):
    """A YOLO layout's lists: 40 train images, nested proportional subsets of 2, 8, 20 and 40."""
    images = tmp_path / "images" / "train2017"
    images.mkdir(parents=True)
    names = [f"./images/train2017/{i:03d}.jpg" for i in range(40)]
    for name in names:
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "train2017.txt").write_text("\n".join(names) + "\n")
    for pct, n in (("5", 2), ("20", 8), ("50", 20), ("100", 40)):
        (tmp_path / f"train2017_{pct}_p.txt").write_text("\n".join(names[:n]) + "\n")
    (tmp_path / "train2017_50_random.txt").write_text("\n".join(names[:20]) + "\n")  # another strategy
    return tmp_path


CHOICES = [
    (1, "train2017_5_p.txt"),
    (7, "train2017_20_p.txt"),
    (8, "train2017_20_p.txt"),
    (21, "train2017_100_p.txt"),
]


@pytest.mark.parametrize(("want", "chosen"), CHOICES)
def test_smallest_list_holding_enough(lists, want, chosen):
    assert calibration_list(lists, want).name == chosen
    assert len(calibration_images(calibration_list(lists, want), limit=want)) == want


def test_fewer_than_asked_is_a_warning_not_a_silent_cap(lists, caplog):
    with caplog.at_level(logging.WARNING, logger="detpipe.export.calib"):
        source = calibration_list(lists, 300)
        paths = calibration_images(source, limit=300)
    assert source.name == "train2017_100_p.txt" and len(paths) == 40
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("300 images asked for, but the largest list" in w and "holds 40" in w for w in warnings)
    assert any("300 images asked for" in w and "calibrating on 40" in w for w in warnings)


def test_no_list_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match=r"no train2017\.txt or train2017_<pct>_p\.txt list"):
        calibration_list(tmp_path, 10)
