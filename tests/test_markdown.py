"""detpipe.markdown.table: the one markdown table writer, its alignments and its refusals."""

import pytest

from detpipe.markdown import table


def test_default_right_aligns_all_but_the_first_column():
    assert table(["model", "mAP", "n"], [["yolo12n", "0.412", "3"]]) == [
        "| model | mAP | n |",
        "|---|--:|--:|",
        "| yolo12n | 0.412 | 3 |",
    ]


def test_one_letter_per_column():
    assert table(["format", "backend", "p50", "gate"], [], align="llrl")[1] == "|---|---|--:|---|"
    assert table(["a", "b"], [], align="l")[1] == "|---|---|"


@pytest.mark.parametrize("align", ["lr", "llrx", "c"])
def test_an_align_string_that_does_not_fit_is_refused(align):
    with pytest.raises(ValueError, match="align"):
        table(["a", "b", "c"], [], align=align)
