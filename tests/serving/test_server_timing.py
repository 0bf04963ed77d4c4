"""The Server-Timing header's format (detpipe.serving.timing): written and read back."""

from __future__ import annotations

import pytest

from detpipe.serving.timing import model_ms, server_timing


def test_server_timing_round_trips_in_milliseconds():
    assert server_timing(0.0092714) == "inference;dur=9.271"
    assert model_ms(server_timing(0.0092714)) == 9.271


@pytest.mark.parametrize("value", [None, "", "db;dur=53", "inference", "inference;dur=", "inference;dur=x"])
def test_other_or_malformed_values_read_as_none(value):
    assert model_ms(value) is None
