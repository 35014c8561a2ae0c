"""The numbers of Huh et al. (2016) from a plan's nets: Table 1, Table 2, the 486-class change, and the
series behind the accuracy-vs-classes and accuracy-vs-images-per-class figures (huh_figures.py).

Every pre-training net (family `huh2016`) has its own accuracy (on its own labels), its readout accuracy
(a new fc8 on the original classes, layers 1-7 frozen) and, per target dataset, the accuracy of the net
fine-tuned from it. A net's number is its accuracy at its last validation test (the trained net's, as the
paper reports it), not the first paper's mean of the top-k tests. Each cell is the mean over the plan's
replicates with its 95% interval (stats.py). Nets are found by their fields and their data set's kind.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from . import stats
from .counted import Numbers
from .stats import Estimate
from ..plan.datasets import Kind
from ..plan.model import Net, Plan

KINDS = ("original", "labelset", "images", "classes")


@dataclass(frozen=True)
class HuhSet:
    """One pre-training set: its net's own accuracy, its readout, and fine-tuned on each target."""

    net: str
    kind: str                       # one of KINDS
    labels: int
    images_per_class: int | None
    budget: int | None
    own: Estimate | None
    readout: Estimate | None
    targets: Mapping[str, Estimate | None]


@dataclass(frozen=True)
class HuhTable1Row:
    original: Estimate | None
    coarse: Estimate | None
    coarse_set: str | None
    random: Estimate | None


@dataclass(frozen=True)
class HuhBudgetRow:
    """Table 2: one image budget as fewer classes (every image) or every class (fewer images)."""

    classes: Estimate | None = None
    classes_set: str | None = None
    images: Estimate | None = None
    images_set: str | None = None


@dataclass(frozen=True)
class HuhTables:
    original: str
    targets: tuple[str, ...]
    sets: Mapping[str, HuhSet]
    table1: Mapping[str, HuhTable1Row]
    table2: Mapping[str, Mapping[str, HuhBudgetRow]]   # target -> budget (images, as text) -> row
    change486: Mapping[str, Estimate | None]
    section51: str | None
    coarse: str | None          # the set the plan names as Table 1's coarse row (`coarse`), if it does

    def pretrain_vs_scratch(self, t: str) -> Estimate | None:
        r = self.table1[t]
        return stats.combine([(1.0, r.original), (-1.0, r.random)])

    def classes_vs_images(self, t: str) -> Estimate | None:
        rows = [r for r in self.table2[t].values() if r.classes is not None and r.images is not None]
        if not rows:
            return None
        return stats.combine([(s / len(rows), e) for r in rows for s, e in ((1.0, r.classes), (-1.0, r.images))])

    def fewer_images_vs_original(self, t: str) -> Estimate | None:
        fewer = [s.targets[t] for s in self.sets.values() if s.kind == "images" and s.targets[t] is not None]
        orig = self.sets[self.original].targets[t] if self.original in self.sets else None
        if not fewer or orig is None:
            return None
        return stats.combine([(1 / len(fewer), e) for e in fewer] + [(-1.0, orig)])

    def _ns(self) -> list[int]:
        return sorted({e.n for s in self.sets.values() for e in (s.own, s.readout, *s.targets.values()) if e})

    def min_n(self) -> int:
        ns = self._ns()
        return ns[0] if ns else 0

    def replicates(self) -> str:
        """The N behind the tables' cells, in words ("3 replicates", or a range)."""
        ns = self._ns()
        if not ns:
            return "no replicates"
        return f"{ns[0]} replicate{'s' if ns[0] != 1 else ''}" if len(ns) == 1 else \
            f"{ns[0]} to {ns[-1]} replicates"


def _kind(plan: Plan, net: Net) -> tuple[str, int | None]:
    """(kind of pre-training set, images per class where the set fixes it), from the plan's data set."""
    spec = plan.datasets[net.target]
    kind = {Kind.WHOLE: "original", Kind.SAMPLE: "images", Kind.CLASS_BUDGET: "classes"}.get(spec.kind, "labelset")
    return kind, spec.per_class if spec.kind in (Kind.SAMPLE, Kind.CLASS_BUDGET) else None


def _set(d: Numbers, pre: list[Net], targets: tuple[str, ...]) -> HuhSet:
    """The numbers of one pre-training set (`pre`: its base nets, every replicate)."""
    plan, first = d.plan, pre[0]
    kind, per_class = _kind(plan, first)
    names = {n.name for n in pre}
    own = d.level(lambda n: n.name in names)
    readout = own if kind == "original" else d.level(lambda n: n.treatment == "readout" and n.base in names)
    full = plan.synthetic.train_per_class if plan.synthetic else 1000
    return HuhSet(
        net=first.name, kind=kind, labels=first.num_classes,
        images_per_class=full if kind == "original" else per_class,
        budget=plan.datasets[first.target].images, own=own, readout=readout,
        targets={t: d.level(lambda n, t=t: n.treatment == "target_ft" and n.target == t and n.base in names)
                 for t in targets})


def _table2(sets: Mapping[str, HuhSet], t: str) -> dict[str, HuhBudgetRow]:
    rows: dict[str, HuhBudgetRow] = {}
    for ds, s in sets.items():
        if s.kind == "classes" and s.budget:
            rows[str(s.budget)] = HuhBudgetRow(classes=s.targets[t], classes_set=ds)
    for ds, s in sets.items():   # the same budget as every class x fewer images
        if s.kind == "images" and s.images_per_class:
            total = str(s.images_per_class * s.labels)
            if total in rows:
                r = rows[total]
                rows[total] = HuhBudgetRow(r.classes, r.classes_set, s.targets[t], ds)
    return rows


def compute(plan: Plan, finals: Mapping[str, float]) -> HuhTables | None:
    """Huh et al.'s tables from each counted net's final accuracy; None when the plan has no Huh nets."""
    d = Numbers(plan, finals)
    pre_by_set: dict[str, list[Net]] = {}
    for n in plan.nets:
        if n.family == "huh2016" and n.treatment == "base":
            pre_by_set.setdefault(n.target, []).append(n)
    # a plan with the first paper's whole-set base too shares it as Huh's original-set net
    if pre_by_set:
        for n in plan.nets:
            if n.family == "whole" and plan.datasets[n.target].kind == Kind.WHOLE:
                pre_by_set.setdefault(n.target, []).append(n)
    if not pre_by_set:
        return None
    readout_on = next((n.target for n in plan.nets if n.treatment == "readout"), None)
    original = readout_on or next(ds for ds in pre_by_set if plan.datasets[ds].kind == Kind.WHOLE)
    targets = tuple(t.name for t in plan.targets)
    sets = {ds: _set(d, pre, targets) for ds, pre in pre_by_set.items()}
    orig = sets.get(original)
    # Table 1's coarse row: the set the plan names (`coarse`: the paper's 127 top-down classes), else its
    # finest coarser label set
    coarse = plan.compare.get("coarse") or max(
        (ds for ds, s in sets.items() if s.kind == "labelset"), key=lambda ds: sets[ds].labels, default=None)
    cut = sets.get(plan.compare.get("section51", ""))
    table1, table2, change = {}, {}, {}
    for t in targets:
        o = orig.targets[t] if orig else None
        table1[t] = HuhTable1Row(o, sets[coarse].targets[t] if coarse else None, coarse,
                                 d.level(lambda n, t=t: n.treatment == "scratch" and n.target == t))
        table2[t] = _table2(sets, t)
        change[t] = stats.combine([(1.0, cut.targets[t]), (-1.0, o)]) if cut else None
    return HuhTables(original, targets, sets, table1, table2, change, plan.compare.get("section51"),
                     plan.compare.get("coarse"))
