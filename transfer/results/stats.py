"""Means with 95% intervals over replicates, and the verdict a difference gives (docs/statistics.md).

The unit of replication is a **replicate**, never a layer or a net of the same run: for the random split
a split (its two bases and every net trained on it; the paper's four splits are its replicates), for
every other family a replicate index (`Net.replicate`, the plan's `replicates: K` seeded runs).

- A level (one plotted point, one table cell) is the mean over units of each unit's mean, with a Student-t
  interval on those unit means (N - 1 degrees of freedom): exact for normal unit means at any N >= 2,
  where a percentile bootstrap over 3 units covers at most 75% (tests/test_statistics.py).
- A difference between two samples of the random split is **paired** by split (a split's AnB minus the
  baseB of that same split: they share the split's classes), and gets the t interval of the per-split
  differences. Other families' replicates share nothing (same data, another seed), so their differences
  are of independent estimates, with the Welch-Satterthwaite degrees of freedom.
- N = 1: the mean, no interval; a verdict on it is "not resolved".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

LEVEL = 0.95
METHOD = ("Student-t 95% interval over replicates (units: splits for the random split, seeded replicates "
          "otherwise); differences paired by split within the random split, Welch-Satterthwaite between "
          "independent replicates; N = 1 gives no interval")


@dataclass(frozen=True)
class Estimate:
    """A mean over replicates with its 95% interval; `nets` and `points` (their numbers) are the nets
    behind it (points is empty for a difference)."""

    mean: float
    ci95: tuple[float, float] | None    # None when N < 2 (or a part of a difference has N < 2)
    n: int                              # replicates behind it (the smallest N of a difference's parts)
    unit: str                           # what a replicate is: "split", "replicate", or both for a mix
    se: float | None = None             # standard error of the mean
    df: float | None = None             # degrees of freedom of the t quantile
    nets: tuple[str, ...] = ()
    points: tuple[float, ...] = ()      # per-net numbers (a level's nets, in `nets` order)

    JSON_EXTRA = ("count", "std", "min", "max", "replicates")

    @property
    def count(self) -> int:
        """Nets behind it."""
        return len(self.nets)

    @property
    def std(self) -> float | None:
        """Spread of the per-net numbers (ddof 1), None for a difference or one net."""
        return float(np.std(self.points, ddof=1)) if len(self.points) > 1 else (0.0 if self.points else None)

    @property
    def min(self) -> float | None:
        return min(self.points) if self.points else None

    @property
    def max(self) -> float | None:
        return max(self.points) if self.points else None

    @property
    def replicates(self) -> str:
        """N in words: "3 splits", "1 replicate"; a difference of parts with other units names the fewest."""
        if "/" in self.unit:   # a difference of random-split and other parts: N is the smaller one's
            return f"{self.n} or more a part, counting {' and '.join(u + 's' for u in self.unit.split('/'))}"
        return f"{self.n} {self.unit}{'' if self.n == 1 else 's'}"

    def text(self, digits: int = 4, signed: bool = False, pct: bool = False) -> str:
        """`0.6123 [0.5990, 0.6256] (N = 3 splits)`; percentages (points) with pct."""
        def f(v: float) -> str:
            v = 100 * v if pct else v
            d = 2 if pct else digits
            return f"{v:+.{d}f}" if signed else f"{v:.{d}f}"
        ci = f" [{f(self.ci95[0])}, {f(self.ci95[1])}]" if self.ci95 else " [no interval]"
        return f"{f(self.mean)}{'%' if pct else ''}{ci} (N = {self.replicates})"


@dataclass(frozen=True)
class Sample:
    """Per-unit means of a group of nets: unit -> mean of that unit's nets."""

    values: Mapping[str, float]
    unit: str                       # "split" (pairable with other split samples) or "replicate"
    nets: tuple[str, ...]
    points: tuple[float, ...]

    @property
    def paired_by_split(self) -> bool:
        return self.unit == "split"


def sample(items: Iterable[tuple[str, str, float]], unit: str) -> Sample | None:
    """(unit, net name, number) triples -> a Sample; None when there are none."""
    by_unit: dict[str, list[float]] = {}
    nets, points = [], []
    for u, name, value in items:
        by_unit.setdefault(u, []).append(value)
        nets.append(name)
        points.append(value)
    if not nets:
        return None
    return Sample({u: float(np.mean(v)) for u, v in by_unit.items()}, unit, tuple(nets), tuple(points))


def t_quantile(df: float | np.ndarray) -> np.ndarray | float:
    """The t distribution's 97.5% point for `df` degrees of freedom (scalar or array)."""
    from scipy import stats  # noqa: PLC0415 (a second to load: only intervals need it, not every command)
    q = stats.t.ppf(0.5 + LEVEL / 2, df)
    return float(q) if np.ndim(q) == 0 else q


def t_interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along the last axis (units): mean, standard error, and the t interval's half width (N - 1 degrees of
    freedom). Vectorised, so tests draw thousands of samples through this same code."""
    v = np.asarray(values, dtype=float)
    n = v.shape[-1]
    mean = v.mean(axis=-1)
    se = v.std(axis=-1, ddof=1) / math.sqrt(n)
    return mean, se, t_quantile(n - 1) * se


def satterthwaite(variances: np.ndarray, dfs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Along the last axis (independent parts, each c^2 se^2 with its degrees of freedom): the standard
    error of the sum and its Welch-Satterthwaite degrees of freedom."""
    var = np.asarray(variances, dtype=float)
    total = var.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = total ** 2 / (var ** 2 / np.asarray(dfs, dtype=float)).sum(axis=-1)
    return np.sqrt(total), df


def _from_values(values: Sequence[float], unit: str, nets: tuple[str, ...] = (),
                 points: tuple[float, ...] = ()) -> Estimate:
    a = np.asarray(values, dtype=float)
    mean = float(a.mean())
    if a.size < 2:
        return Estimate(mean, None, int(a.size), unit, None, None, nets, points)
    _, se, half = (float(x) for x in t_interval(a))
    return Estimate(mean, (mean - half, mean + half), int(a.size), unit, se, float(a.size - 1), nets, points)


def level(s: Sample | None) -> Estimate | None:
    """One point or cell: the mean over units, t interval over the unit means."""
    if s is None:
        return None
    return _from_values(list(s.values.values()), s.unit, s.nets, s.points)


def combine(terms: Sequence[tuple[float, Sample | Estimate | None]]) -> Estimate | None:
    """sum(c * X): paired per split when every term is a split Sample (on the splits all terms share),
    else a sum of independent estimates (Welch-Satterthwaite). None when a term is missing."""
    if not terms or any(x is None for _, x in terms):
        return None
    if all(isinstance(x, Sample) and x.paired_by_split for _, x in terms):
        units = set.intersection(*(set(x.values) for _, x in terms))  # type: ignore[union-attr]
        if not units:
            return None
        diffs = [sum(c * x.values[u] for c, x in terms) for u in sorted(units)]  # type: ignore[union-attr]
        nets = tuple(n for _, x in terms for n in x.nets)
        return _from_values(diffs, "split", nets)
    ests = [(c, x if isinstance(x, Estimate) else level(x)) for c, x in terms]
    return independent(ests)  # type: ignore[arg-type]


def independent(terms: Sequence[tuple[float, Estimate]]) -> Estimate:
    """sum(c * E) of independent estimates: variance sum(c^2 se^2), Satterthwaite degrees of freedom."""
    mean = sum(c * e.mean for c, e in terms)
    n = min(e.n for _, e in terms)
    units = sorted({e.unit for _, e in terms})
    unit = units[0] if len(units) == 1 else "/".join(units)
    nets = tuple(x for _, e in terms for x in e.nets)
    if any(e.se is None or e.df is None for _, e in terms):
        return Estimate(mean, None, n, unit, None, None, nets)
    var = np.array([c * c * e.se ** 2 for c, e in terms])  # type: ignore[operator]
    dfs = np.array([e.df for _, e in terms], dtype=float)
    if var.sum() == 0:   # every part without spread: a zero-width interval, as the t interval of equal values
        return Estimate(mean, (mean, mean), n, unit, 0.0, float(dfs.min()), nets)
    se, df = (float(x) for x in satterthwaite(var, dfs))
    half = t_quantile(df) * se
    return Estimate(mean, (mean - half, mean + half), n, unit, se, df, nets)


# ------------------------------------------------------------------------------ verdicts

YES, NO, UNRESOLVED, NO_DATA = "yes", "no", "not resolved", "no data"


def decide(diff: Estimate | None, direction: int) -> str:
    """"yes" when the interval excludes zero in the paper's direction (+1: above zero, -1: below),
    "no" when it excludes zero the other way, else "not resolved"; "no data" without an estimate."""
    if diff is None:
        return NO_DATA
    if diff.ci95 is None:
        return UNRESOLVED
    lo, hi = diff.ci95
    if (lo > 0 and direction > 0) or (hi < 0 and direction < 0):
        return YES
    if (lo > 0 and direction < 0) or (hi < 0 and direction > 0):
        return NO
    return UNRESOLVED


def answer_text(answer: str, diff: Estimate | None) -> str:
    """The verdict in words: "not resolved at this size (3 splits)" for an interval across zero."""
    if answer == UNRESOLVED and diff is not None:
        return f"not resolved at this size ({diff.replicates})"
    return answer

