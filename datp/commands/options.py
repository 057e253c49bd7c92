"""Argument types and options shared by several subcommands.

A bad value is refused by argparse itself, before anything is loaded: one line naming the
option, exit status 2.
"""

from __future__ import annotations

import argparse
import math

from datp.choices import MAX_SEGMENTS, MAX_SHORT_SIDE


def positive_int(text: str) -> int:
    """An integer >= 1 (segments, top-k, jobs, batch sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def segment_count(text: str) -> int:
    """A number of segments, 1 to ``MAX_SEGMENTS`` (``data.num_segments``'s range)."""
    value = positive_int(text)
    if value > MAX_SEGMENTS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_SEGMENTS}, got {value}")
    return value


def short_side(text: str) -> int:
    """A short side in pixels to resize frames to, 16 to ``data.resize_short``'s bound."""
    value = positive_int(text)
    if not 16 <= value <= MAX_SHORT_SIDE:
        raise argparse.ArgumentTypeError(f"must lie in [16, {MAX_SHORT_SIDE}], got {value}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (fusion weights, tolerances)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (frame rates, windows, strides)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    value = non_negative_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def add_overrides(parser: argparse.ArgumentParser, what: str) -> None:
    """``--set section.key=value`` (repeatable)."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help=f"override {what} (repeatable)",
    )
