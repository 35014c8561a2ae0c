"""Types for numeric command-line options, checked where they enter.

A value out of range is refused by argparse itself (exit 2, the option and the value named) before
anything is written, instead of failing deep inside (a range step of 0, a negative map size, a seed
numpy refuses) after a `.partial` was made.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

SEED_MAX = 2**32 - 1   # numpy.random.RandomState and Caffe's random_seed take seeds up to this


def whole(lo: int, hi: int | None = None, why: str = "") -> Callable[[str], int]:
    """A whole number in lo..hi (hi None: no upper bound); `why` is added to the refusal."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"at least {lo}" if hi is None else f"in {lo}..{hi}"
            raise argparse.ArgumentTypeError(f"must be {bound}{why}, got {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def seed(text: str) -> int:
    """A random seed: 0..2**32-1, what numpy and Caffe accept."""
    return whole(0, SEED_MAX)(text)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive(text: str) -> float:
    """A finite number above 0 (a time limit, seconds an iteration)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds, 0 or more (0 where the option says what it means)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value
