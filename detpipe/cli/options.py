"""Argument types shared by several subcommands (argparse turns their errors into exit 2)."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from pathlib import Path
from typing import Any


def _parse(text: str, kind: type[int] | type[float]) -> int | float:
    """``text`` as an int or a float, or the argparse error naming what was expected."""
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _checked(value: Any, ok: bool, problem: str) -> Any:
    """``value`` when ``ok``, else the argparse error ``problem, got value``."""
    if not ok:
        raise argparse.ArgumentTypeError(f"{problem}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer > 0."""
    value = _parse(text, int)
    return _checked(value, value > 0, "must be > 0")


def non_negative_float(text: str) -> float:
    """A number >= 0."""
    value = _parse(text, float)
    return _checked(value, value >= 0, "must be >= 0")


def port_number(text: str) -> int:
    """A TCP port, 0-65535 (0: any free port)."""
    value = _parse(text, int)
    return _checked(value, 0 <= value <= 65535, "must be a port number 0-65535")


def unit_float(text: str) -> float:
    """A number in [0, 1] (a threshold or a fraction)."""
    value = _parse(text, float)
    return _checked(value, 0 <= value <= 1, "must be in [0, 1]")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _parse(text, int)
    return _checked(value, value >= 0, "must be >= 0")


def existing_file(text: str) -> Path:
    """A path to an existing regular file."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def existing_dir(text: str) -> Path:
    """A path to an existing directory."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such directory")
    return path


def csv_list(text: str) -> list[str]:
    """A comma-separated list of non-empty names: 'a,b,c'."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


_DURATION = re.compile(r"^(\d+)([smhd])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d`` -> a positive timedelta."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 7d, 12h, 30m or 90s, got {text!r}")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def non_negative_duration(text: str) -> timedelta:
    """:func:`duration`, or ``0`` / ``0s`` (no wait)."""
    if text.strip() in ("0", "0s", "0m", "0h", "0d"):
        return timedelta(0)
    return duration(text)


def percentage(text: str) -> int:
    """A whole percentage 0-100."""
    value = _parse(text, int)
    return _checked(value, 0 <= value <= 100, "must be 0-100")


def positive_float(text: str) -> float:
    """A number > 0."""
    value = _parse(text, float)
    return _checked(value, value > 0, "must be > 0")
