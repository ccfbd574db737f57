"""``argparse`` value types shared by the command line and the gallery's per-kind flags.

Each raises ``argparse.ArgumentTypeError`` saying what was expected and what was given, so the
CLI prints one line naming the flag.
"""

from __future__ import annotations

import argparse
import math

__all__ = [
    "finite_float",
    "name_list",
    "nonneg_int",
    "nonneg_int_list",
    "positive_float",
    "positive_int",
    "positive_int_list",
]


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def finite_float(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a duration: 0 would fail every cell at once)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def name_list(text: str) -> list[str]:
    """A non-empty comma-separated list of names."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def positive_int_list(text: str) -> list[int]:
    """A non-empty comma-separated list of integers >= 1."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of integers")
    return [positive_int(part) for part in items]


def nonneg_int_list(text: str) -> list[int]:
    """A non-empty comma-separated list of integers >= 0."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected integers >= 0, got {text!r}")
    return [nonneg_int(part) for part in items]
