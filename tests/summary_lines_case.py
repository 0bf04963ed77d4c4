"""Not collected by itself: tests/test_summary_lines.py runs it in a pytest-xdist session."""


def test_first_worker_line(summary_line) -> None:
    summary_line("summary-lines-case: from one test")


def test_second_worker_line(summary_line) -> None:
    summary_line("summary-lines-case: from another")
