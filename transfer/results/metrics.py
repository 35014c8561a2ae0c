"""A net's numbers from its logs: the paper's per-net metric (the mean of its top-k validation
accuracies, k scaled to the number of tests) and whether its curve was still climbing at the end.

How each is defined, and why: docs/statistics.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..caffe.logs import NetLog

TOP_K = 10          # the paper's k: every released net has 200 (reduced data) to ~450 tests
TESTS_PER_K = 20    # one top-k test per 20 tests: the paper's 10 of its shortest runs' 200 tests
Z_IMPROVING = 2.0   # a curve "still improves" when its last fifth beats the fifth before by 2 standard errors


def top_k_for(tests: int) -> int:
    """k for a run of `tests` validation tests: 10 for every released run (200 and more tests),
    the same share (1 in 20, at least 1) for shorter runs, whose early tests are still climbing."""
    return max(1, min(TOP_K, round(tests / TESTS_PER_K)))


@dataclass(frozen=True)
class Convergence:
    """The end of a validation curve: the mean of its last fifth of tests against the fifth before.

    `noise` is the test-to-test standard deviation (from successive differences of those tests, at
    least the binomial resolution of an accuracy on `val_images`); the change counts as improvement
    when it exceeds Z_IMPROVING standard errors of a difference of two window means."""

    still_improving: bool | None    # None: too few tests to tell (fewer than 4)
    window: int                     # tests in each window
    last: float | None              # mean accuracy of the last window
    before: float | None            # of the window before it
    noise: float | None

    @property
    def change(self) -> float | None:
        return None if self.last is None or self.before is None else self.last - self.before

    JSON_EXTRA = ("change",)


def convergence(acc: np.ndarray, val_images: int | None = None) -> Convergence:
    acc = acc[np.isfinite(acc)]
    m = max(2, acc.size // 5)
    if acc.size < 2 * m:
        return Convergence(None, m, None, None, None)
    last, before = acc[-m:], acc[-2 * m:-m]
    # successive differences remove a slow trend; each has variance 2 sigma^2
    noise = float(np.std(np.diff(acc[-2 * m:]), ddof=1) / math.sqrt(2)) if 2 * m > 2 else 0.0
    if val_images:
        p = float(np.clip(last.mean(), 0.0, 1.0))
        noise = max(noise, math.sqrt(p * (1 - p) / val_images))
    change = float(last.mean() - before.mean())
    se = noise * math.sqrt(2 / m)
    return Convergence(bool(change > Z_IMPROVING * se), m, float(last.mean()), float(before.mean()), noise)


@dataclass(frozen=True)
class NetMetric:
    metric: float       # mean of the top-k validation accuracies
    final: float        # accuracy at the last test
    best: float
    iterations: int     # last iteration the logs reach
    tests: int          # validation tests seen
    attempts: int       # log files
    k: int = TOP_K      # the k of `metric` (at most the tests there are)
    convergence: Convergence | None = None


def net_metric(log: NetLog, k: int | None = None, val_images: int | None = None) -> NetMetric | None:
    """The per-net numbers (k: top_k_for(tests) unless given), or None when the logs hold no test."""
    if not log.val_accuracy:
        return None
    its, acc = log.series("val_accuracy")
    finite = acc[np.isfinite(acc)]
    if finite.size == 0:
        return None
    k = min(k or top_k_for(int(acc.size)), int(finite.size))
    top = np.sort(finite)[-k:]
    return NetMetric(metric=float(top.mean()), final=float(acc[-1]), best=float(finite.max()),
                     iterations=int(log.last_iteration or its[-1]), tests=int(acc.size),
                     attempts=log.attempts, k=k, convergence=convergence(acc, val_images))
