"""Learning curves: validation accuracy against iteration of every net with tests, one panel per treatment
group (both papers' families), the nets still improving at their last tests drawn dashed-bold at the end."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .collect import Collected
from .figures import no_data, note, plt, save
from .model import Report
from ..plan.model import Plan


@dataclass(frozen=True)
class CurveSeries:
    name: str
    family: str
    treatment: str
    n: int | None
    target: str
    source: str | None          # the data set its copied layers come from (Huh's pre-training set)
    per_class: int | None       # images per class of its training set (reduced data: the colour)
    counted: bool
    still_improving: bool | None
    iters: tuple[int, ...]
    acc: tuple[float, ...]


def series(plan: Plan, col: Collected) -> list[CurveSeries]:
    out = []
    for net in plan.nets:
        log, e = col.logs.get(net.name), col.entries[net.name]
        if log and log.val_accuracy:
            its, acc = log.series("val_accuracy")
            out.append(CurveSeries(net.name, net.family, net.treatment, net.n, net.target, net.source,
                                   plan.datasets[net.target].per_class, e.counted, e.still_improving,
                                   tuple(int(i) for i in its), tuple(float(a) for a in acc)))
    return out


GROUPS = [  # (title, families (None: any), treatments)
    ("random split: base nets", ("random_split",), ("base",)),
    ("BnB (selffer, frozen)", ("random_split",), ("selffer",)),
    ("BnB+ (selffer, fine-tuned)", ("random_split",), ("selffer_ft",)),
    ("AnB (transfer, frozen)", ("random_split",), ("transfer",)),
    ("AnB+ (transfer, fine-tuned)", ("random_split",), ("transfer_ft",)),
    ("man-made/natural", ("natman",), ("base", "transfer", "transfer_ft", "selffer", "selffer_ft")),
    ("base on every class and random weights", ("whole", "random_weights"), ("base", "random_weights")),
    ("reduced data", ("reduced",), ("reduced",)),
    ("Huh: pre-training nets", ("huh2016",), ("base",)),
    ("Huh: readout (layers 1-7 frozen)", ("huh2016",), ("readout",)),
    ("target: fine-tuned from a pre-trained net", ("target",), ("target_ft",)),
    ("target: from scratch", ("target",), ("scratch",)),
]


BY_LAYER = ("random_split", "natman", "random_weights")   # coloured by layer n (the colour bar)


def _colour(s: CurveSeries, sets: list[str]) -> object:
    if s.family == "reduced" and s.per_class:   # by images per class, log scale
        return plt.get_cmap("plasma")(0.85 * np.log(s.per_class) / np.log(1300))
    if s.family in BY_LAYER:
        return plt.get_cmap("viridis")((s.n - 1) / 6) if s.n else "black"
    # Huh's nets and target transfer: one colour per pre-training set (the set a net trains on or copies from)
    return plt.get_cmap("tab10")(sets.index(s.source or s.target) % 10)


def _panel(ax: plt.Axes, title: str, members: list[CurveSeries]) -> None:
    sets = sorted({m.source or m.target for m in members})
    legend = len(members) <= 12
    for s in sorted(members, key=lambda m: (m.n or 0, m.name)):
        ls = "--" if s.family == "natman" and s.target == "manmade" else "-"
        label = (s.name + (" (still improving)" if s.still_improving else "")) if legend else None
        ax.plot(s.iters, s.acc, lw=2.2 if s.still_improving else 1, color=_colour(s, sets), ls=ls,
                alpha=0.85 if s.counted else 0.35, label=label)
    improving = sum(bool(s.still_improving) for s in members)
    nets = f"{len(members)} net{'s' if len(members) != 1 else ''}"
    ax.set_title(f"{title} ({nets}" + (f", {improving} still improving" if improving else "") + ")",
                 fontsize=10)
    ax.set_xlabel("Iteration")
    ax.set_ylabel("Validation top-1 accuracy")
    ax.grid(color="0.92", lw=0.6)
    if legend:
        ax.legend(fontsize=6.5, frameon=False, ncol=2 if len(members) > 6 else 1)
    elif members[0].family not in BY_LAYER and members[0].family != "reduced":   # one entry per set
        for name in sets:
            ax.plot([], [], color=plt.get_cmap("tab10")(sets.index(name) % 10), label=name)
        ax.legend(fontsize=6.5, frameon=False, ncol=2 if len(sets) > 6 else 1, title="pre-training set",
                  title_fontsize=7)


def curves(report: Report, all_series: list[CurveSeries], out: Path) -> list[str]:
    groups = []
    for title, families, treatments in GROUPS:
        members = [s for s in all_series if s.family in families and s.treatment in treatments]
        if members:
            groups.append((title, members))
    ncol = 2 if len(groups) > 1 else 1
    nrow = max(1, -(-len(groups) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.5 * ncol, 3.6 * nrow), squeeze=False, layout="constrained")
    for ax, (title, members) in zip(axes.flat, groups):
        _panel(ax, title, members)
    if any(len(m) > 12 and m[0].family in BY_LAYER for _, m in groups):
        sm = plt.cm.ScalarMappable(cmap=plt.get_cmap("viridis"), norm=plt.Normalize(1, 7))
        fig.colorbar(sm, ax=axes.ravel().tolist(), label="layer n (dashed: target man-made)", shrink=0.5)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_axis_off()
    if not groups:
        axes[0, 0].set_axis_on()
        no_data(axes[0, 0], "no data: no net has validation results")
    fig.suptitle(f"Learning curves (plan {report.plan}; thick: still improving at the last tests; faint: not "
                 "counted)")
    return save(fig, out, "curves", note(report))
