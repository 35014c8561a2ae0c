"""Yosinski et al. 2014's numbers from the counted nets: Figure 2's series, Table 1, Figure 3's series,
the drops at n = 7, Table S1. Every point and cell is an `Estimate` over replicates (stats.py).

Nets are chosen by their fields (family, treatment, n, target, split, replicate) and their data set's
kind, never by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from . import stats
from .counted import Numbers
from .stats import Estimate, Sample
from ..plan.model import Net

NS = tuple(range(1, 8))
# Figure 2's names for the random-split treatments (AnA pools with BnB, BnA with AnB).
FIG2 = {"selffer": "BnB", "selffer_ft": "BnB+", "transfer": "AnB", "transfer_ft": "AnB+"}
TABLE1_RANGES = {"1-7": (1, 7), "3-7": (3, 7), "5-7": (5, 7)}
HIGH_N = (6, 7)        # "AnB falls at high n": the last two layers
MIDDLE_N = (3, 4, 5)   # "BnB dips in the middle layers"
PAST_2 = (3, 4, 5, 6, 7)   # random weights "past layers 1-2"


# ------------------------------------------------------------------------------ Figure 2

def base_b_nets(nets: Sequence[Net]) -> list[Net]:
    """The paper's baseB points: base nets of the random halves that some transfer/selffer net targets
    (every half in the paper's plan, so eight nets; the B halves alone in the small plans)."""
    rs = [n for n in nets if n.family == "random_split"]
    targets = {n.target for n in rs if n.treatment != "base"}
    bases = [n for n in rs if n.treatment == "base"]
    return [n for n in bases if n.target in targets] if targets else bases


def rs_of(treatment: str, ns: Sequence[int]) -> Callable[[Net], bool]:
    return lambda n: n.family == "random_split" and n.treatment == treatment and n.n in ns


@dataclass(frozen=True)
class Figure2:
    """Figure 2: baseB and, per n, BnB, BnB+, AnB, AnB+ (report.json `random_split`)."""

    base_b: Estimate | None = field(metadata={"json": "baseB"})
    bnb: Mapping[int, Estimate | None] = field(metadata={"json": "BnB"})
    bnb_ft: Mapping[int, Estimate | None] = field(metadata={"json": "BnB+"})
    anb: Mapping[int, Estimate | None] = field(metadata={"json": "AnB"})
    anb_ft: Mapping[int, Estimate | None] = field(metadata={"json": "AnB+"})

    def series(self) -> dict[str, Mapping[int, Estimate | None]]:
        """Figure 2's four series by their labels, in the paper's order."""
        return {"BnB": self.bnb, "BnB+": self.bnb_ft, "AnB": self.anb, "AnB+": self.anb_ft}


def base_b_sample(d: Numbers) -> Sample | None:
    names = {n.name for n in base_b_nets(d.plan.nets)}
    return d.sample(lambda n: n.name in names)


def figure2(d: Numbers) -> Figure2:
    by = {t: {n: d.level(rs_of(t, (n,))) for n in NS} for t in FIG2}
    return Figure2(d.level(lambda n: n.name in {x.name for x in base_b_nets(d.plan.nets)}),
                   by["selffer"], by["selffer_ft"], by["transfer"], by["transfer_ft"])


def vs_base_b(d: Numbers, treatment: str, ns: Sequence[int]) -> Estimate | None:
    """mean(treatment at ns) - baseB, paired by split."""
    return stats.combine([(1.0, d.sample(rs_of(treatment, ns))), (-1.0, base_b_sample(d))])


# ------------------------------------------------------------------------------ Table 1

@dataclass(frozen=True)
class Table1Row:
    """AnB+ over baseB and over BnB+ for a range of layers: paired by split, with the paper's pooled
    number (every AnB+ net of the range minus every baseB net, as Table 1 was computed) beside it."""

    layers: str
    vs_base: Estimate | None
    vs_selffer_ft: Estimate | None
    pooled_vs_base: float | None
    pooled_vs_selffer_ft: float | None
    count_anb_ft: int
    count_base: int
    count_bnb_ft: int


def _pooled(a: Sample | None, b: Sample | None) -> float | None:
    return None if a is None or b is None else float(np.mean(a.points) - np.mean(b.points))


def table1(d: Numbers) -> dict[str, Table1Row]:
    base = base_b_sample(d)
    rows = {}
    for name, (lo, hi) in TABLE1_RANGES.items():
        ns = tuple(range(lo, hi + 1))
        anb_ft, bnb_ft = d.sample(rs_of("transfer_ft", ns)), d.sample(rs_of("selffer_ft", ns))
        rows[name] = Table1Row(name, stats.combine([(1.0, anb_ft), (-1.0, base)]),
                               stats.combine([(1.0, anb_ft), (-1.0, bnb_ft)]),
                               _pooled(anb_ft, base), _pooled(anb_ft, bnb_ft),
                               len(anb_ft.nets) if anb_ft else 0, len(base.nets) if base else 0,
                               len(bnb_ft.nets) if bnb_ft else 0)
    return rows


# ------------------------------------------------------------------------------ Figure 3

@dataclass(frozen=True)
class Natman:
    """Figure 3 top left: man-made/natural bases and frozen transfer per target (and normalised by the
    base of its target)."""

    base: Mapping[str, Estimate | None]
    transfer: Mapping[str, Mapping[int, Estimate | None]]
    normalized: Mapping[str, Mapping[int, Estimate | None]]
    pooled: Mapping[int, Estimate | None]   # both targets' normalised numbers (Figure 3 bottom, hexagons)


@dataclass(frozen=True)
class RandomWeights:
    """Figure 3 top right: layers 1..n random and frozen, against the base on every class."""

    base: Estimate | None
    by_n: Mapping[int, Estimate | None] = field(metadata={"flatten": True})
    normalized: Mapping[int, Estimate | None]
    classes: int | None     # the classes of the set they train on (the panel's title)


def _minus_level(x: Sample | None, base: Sample | None) -> Estimate | None:
    """x - base (independent replicates), its points each minus the base's mean."""
    est = stats.combine([(1.0, x), (-1.0, base)])
    if est is None or x is None or base is None:
        return est
    shift = stats.level(base).mean  # type: ignore[union-attr]
    return Estimate(est.mean, est.ci95, est.n, est.unit, est.se, est.df, x.nets, tuple(p - shift for p in x.points))


TARGETS = ("manmade", "natural")


def natman(d: Numbers) -> Natman:
    def nm(treatment: str, target: str, ns: Sequence[int | None]) -> Sample | None:
        return d.sample(lambda n: n.family == "natman" and n.treatment == treatment and n.target == target
                        and n.n in ns)
    base = {t: nm("base", t, (None,)) for t in TARGETS}
    transfer = {t: {n: nm("transfer", t, (n,)) for n in NS} for t in TARGETS}
    norm = {t: {n: _minus_level(transfer[t][n], base[t]) for n in NS} for t in TARGETS}
    pooled = {}
    for n in NS:
        have = [t for t in TARGETS if norm[t][n] is not None]
        est = stats.independent([(1 / len(have), norm[t][n]) for t in have]) if have else None  # type: ignore[misc]
        pooled[n] = None if est is None else Estimate(
            est.mean, est.ci95, est.n, est.unit, est.se, est.df, est.nets,
            tuple(p for t in have for p in norm[t][n].points))  # type: ignore[union-attr]
    return Natman({t: stats.level(base[t]) for t in TARGETS},
                  {t: {n: stats.level(s) for n, s in transfer[t].items()} for t in TARGETS}, norm, pooled)


def random_weights(d: Numbers) -> RandomWeights:
    base = d.sample(lambda n: n.family == "whole")
    by_n = {n: d.sample(lambda x, n=n: x.family == "random_weights" and x.n == n) for n in NS}
    rw = next((n for n in d.plan.nets if n.family == "random_weights"), None)
    whole = next((n for n in d.plan.nets if n.family == "whole"), None)
    on = rw or whole
    return RandomWeights(stats.level(base), {n: stats.level(s) for n, s in by_n.items()},
                         {n: _minus_level(s, base) for n, s in by_n.items()},
                         d.plan.datasets[on.target].classes if on else None)


def random_split_normalized(d: Numbers) -> dict[int, Estimate | None]:
    """AnB minus baseB per n (Figure 3 bottom, red diamonds): paired by split; the points are each
    AnB net minus the baseB mean."""
    base = stats.level(base_b_sample(d))
    out = {}
    for n in NS:
        est = vs_base_b(d, "transfer", (n,))
        anb = d.sample(rs_of("transfer", (n,)))
        out[n] = None if est is None or anb is None or base is None else Estimate(
            est.mean, est.ci95, est.n, est.unit, est.se, est.df, anb.nets, tuple(p - base.mean for p in anb.points))
    return out


@dataclass(frozen=True)
class Drops:
    """Frozen-transfer drop at n = 7 below the base (positive = worse than base), as the paper quotes it:
    about 8% for the random split, 25% for man-made/natural."""

    random_split: Estimate | None
    natman: Estimate | None


def drops_n7(d: Numbers, nm: Natman) -> Drops:
    rs = stats.combine([(1.0, base_b_sample(d)), (-1.0, d.sample(rs_of("transfer", (7,))))])
    have = [t for t in TARGETS if nm.normalized[t][7] is not None]
    natman_drop = stats.independent([(-1 / len(have), nm.normalized[t][7]) for t in have]) if have else None  # type: ignore[misc]
    return Drops(rs, natman_drop)


def reduced(d: Numbers) -> dict[str, Estimate | None]:
    """Table S1: accuracy by images per class (the data set's `per_class`), keyed as the released names
    ('1300', '0100')."""
    counts = sorted({d.plan.datasets[n.target].per_class for n in d.plan.nets if n.family == "reduced"} - {None},
                    reverse=True)
    return {f"{c:04d}": d.level(lambda n, c=c: n.family == "reduced" and d.plan.datasets[n.target].per_class == c)
            for c in counts}
