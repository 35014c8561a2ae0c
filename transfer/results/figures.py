"""The paper's figures, drawn from the typed report (model.Report).

figure2: random A/B splits (top: every net; bottom: means with 95% intervals, interpretations 2-5 where
         their pattern's verdict is yes)
figure3: man-made/natural, random weights, and both normalized by their base (with the random split)
figureS1: reduced data, linear and log axes, beside the published Table S1
Every mean carries its 95% interval (error bars) and each figure says the N replicates behind its points;
each draws whatever data exist and says "no data" where a panel has none. Learning curves: curves.py.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterable, Mapping

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402

from . import published  # noqa: E402
from .model import Report  # noqa: E402
from .stats import Estimate  # noqa: E402
from .yosinski import NS  # noqa: E402
from ..core.figfiles import save_figure  # noqa: E402
from ..core.palette import NATMAN, RANDOM, STYLE  # noqa: E402

matplotlib.rcParams["pdf.fonttype"] = 42  # TrueType in PDFs, as the released notebook did

XLABEL = "Layer n at which network is chopped and retrained"
YLABEL = "Top-1 accuracy (higher is better)"
WHITE = dict(marker="o", mfc="white", mec="black", color="black")
NOTES = {  # Section 4.1's numbered interpretations, as labelled in the paper's bottom panel
    "baseB": "1: baseB",
    "BnB": "2: Performance drops\ndue to fragile co-adaptation",
    "BnB+": "3: Fine-tuning recovers\nco-adapted interactions",
    "AnB": "4: Performance drops due to\nrepresentation specificity",
    "AnB+": "5: Transfer + fine-tuning\nimproves generalization",
}


def _absent(report: Report, *families: str) -> bool:
    """True when the plan has none of these families (so a panel says so, not just "no data")."""
    return not set(families) & set(report.families)


def no_data(ax: plt.Axes, what: str = "no data") -> None:
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.4")


def note(report: Report) -> str:
    """What every figure says in its corner: how the numbers were computed, and --partial."""
    partial = "; INCLUDES UNFINISHED NETS (--partial)" if report.includes_unfinished else ""
    return f"precision: {report.precision.label}{partial}"


def n_text(estimates: Iterable[Estimate | None]) -> str:
    """"N = 3 replicates per mean (...)" (or a range) for a figure's caption line."""
    es = [e for e in estimates if e is not None]
    if not es:
        return "N: no counted nets"
    ns = sorted({e.n for e in es})
    kinds = {u for e in es for u in e.unit.split("/")}
    words = {"split": "random split: a replicate is a split",
             "replicate": "elsewhere a replicate is a seeded rerun" if "split" in kinds else "a seeded rerun each"}
    what = "; ".join(w for u, w in words.items() if u in kinds)
    n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    return f"N = {n} replicate{'s' if ns[-1] != 1 else ''} per mean ({what}); bars: 95% intervals" + (
        " (none where N = 1)" if ns[0] == 1 else "")


def save(fig: plt.Figure, out: Path, stem: str, corner: str | None = None, caption: str | None = None) -> list[str]:
    """PNG and PDF, each written to a temp file and renamed, so a reader never sees half a file.
    `corner` (precision) goes bottom right, `caption` (N replicates) bottom left."""
    # below the axes (outside the canvas: the tight bounding box takes them in); the caption wrapped to
    # about two thirds of the width (7.5 pt characters are about 4 pt wide), the corner note beside it
    lines = 0
    if caption:
        text = textwrap.fill(caption, int(fig.get_figwidth() * 72 * 0.66 / 4.2))
        fig.text(0.01, -0.005, text, ha="left", va="top", fontsize=7.5, color="0.2")
        lines = text.count("\n") + 1
    if corner:   # under the caption: a line is about 1.3 x 7.5 pt high
        fig.text(0.99, -0.005 - lines * 7.5 * 1.3 / (fig.get_figheight() * 72), corner, ha="right", va="top",
                 fontsize=7, color="0.35")
    return save_figure(fig, out, stem, dpi=150)


def _layer_axis(ax: plt.Axes, with_base: bool = True) -> None:
    ax.set_xticks(range(0, 8) if with_base else NS)
    ax.set_xlim(-0.5 if with_base else 0.5, 7.5)
    ax.grid(axis="y", color="0.9", lw=0.6)
    ax.set_axisbelow(True)


def points(ax: plt.Axes, x: float, e: Estimate | None, style: dict, size: float = 7,
           label: str | None = None) -> bool:
    """Every net behind a mean, at x."""
    if not e or not e.points:
        return False
    ax.plot([x] * len(e.points), e.points, ls="none", marker=style["marker"], mfc=style["mfc"],
            mec=style["mec"], ms=size, mew=1.0, label=label, zorder=3, alpha=0.8)
    return True


def means(ax: plt.Axes, by_n: Mapping[int, Estimate | None], style: dict, label: str | None = None,
          dx: float = 0.0, start: tuple[float, Estimate] | None = None, ls: str = "-") -> tuple[list, list]:
    """A line through the means per n (from `start`, e.g. the base at n = 0: its interval is drawn with its
    own points, once), each with its 95% interval."""
    pts = [(n + dx, by_n[n]) for n in NS if by_n.get(n)]
    if not pts:
        return [], []
    pts = ([start] if start else []) + pts
    xs, es = [x for x, _ in pts], [e for _, e in pts]
    ys = [e.mean for e in es]
    ax.plot(xs, ys, color=style["color"], lw=1.8, ls=ls, marker=style["marker"], mfc=style["mfc"],
            mec=style["mec"], ms=7, label=label, zorder=4)
    with_ci = [(x, e) for x, e in pts[1 if start else 0:] if e.ci95]
    if with_ci:
        ax.errorbar([x for x, _ in with_ci], [e.mean for _, e in with_ci],
                    yerr=[[e.mean - e.ci95[0] for _, e in with_ci], [e.ci95[1] - e.mean for _, e in with_ci]],
                    ls="none", ecolor=style["color"], elinewidth=1.2, capsize=3, zorder=4)
    return xs, ys


def _nets(k: int) -> str:
    return f"{k} net" if k == 1 else f"{k} nets"


def _pad_y(ax: plt.Axes, top: float = 0.15, bottom: float = 0.2) -> None:
    lo, hi = ax.get_ylim()
    span = hi - lo
    ax.set_ylim(lo - bottom * span, hi + top * span)


def _title(report: Report, what: str) -> str:
    return f"{what} (plan {report.plan}{', includes unfinished nets' if report.includes_unfinished else ''})"


# ------------------------------------------------------------------------------ Figure 2

def _figure2_top(ax: plt.Axes, report: Report) -> None:
    rs = report.random_split
    base = rs.base_b if rs else None
    drawn = points(ax, 0, base, STYLE["baseB"], 9, f"baseB ({_nets(base.count)})" if base else None)
    for label, by_n in (rs.series().items() if rs else ()):
        count = sum(e.count for e in by_n.values() if e)
        first = True
        for n in NS:
            if points(ax, n + STYLE[label]["dx"], by_n.get(n), STYLE[label], 7, f"{label} ({_nets(count)})" if first else None):
                first, drawn = False, True
    if report.plan == "paper":
        ax.axhline(published.BASE_B_TOP1, color="0.55", ls="--", lw=0.8, zorder=1,
                   label=f"published baseB {published.BASE_B_TOP1}")
    if drawn:
        ax.legend(loc="best", fontsize=9, numpoints=1, frameon=False, ncol=2)
    else:
        no_data(ax, "no data: no random-split net is counted")
    ax.set_ylabel(YLABEL)
    ax.set_title(_title(report, "Figure 2: random A/B splits, every net"))


def _note(ax: plt.Axes, label: str, xs: list[float], ys: list[float]) -> None:
    """Place an interpretation next to the part of its line the paper's note points at."""
    def nearest(x: float) -> int:
        return min(range(len(xs)), key=lambda i: abs(xs[i] - x))
    # 5 over the left half of AnB+, 3 over the right half of BnB+, so the two never collide
    pick = {"BnB": lambda: min(range(len(ys)), key=ys.__getitem__), "AnB": lambda: len(xs) - 1,
            "BnB+": lambda: nearest(6), "AnB+": lambda: nearest(3)}[label]()
    off, ha, va = {"BnB": ((-4, -26), "right", "top"), "AnB": ((-14, -6), "right", "top"),
                   "BnB+": ((0, 34), "center", "bottom"), "AnB+": ((0, 26), "center", "bottom")}[label]
    if label == "BnB" and xs[pick] <= 2:  # a dip near the left edge: write the note to its right
        off, ha = (10, -26), "left"
    ax.annotate(NOTES[label], (xs[pick], ys[pick]), xytext=off, textcoords="offset points",
                ha=ha, va=va, fontsize=8.5, color=STYLE[label]["color"],
                arrowprops=dict(arrowstyle="-", color=STYLE[label]["color"], lw=0.6, shrinkB=4))


def _base_mark(ax: plt.Axes, base: Estimate, x: float = 0.0) -> None:
    """A base at n = 0: a white circle with its 95% interval."""
    ci = base.ci95 or (base.mean, base.mean)
    ax.errorbar([x], [base.mean], yerr=[[base.mean - ci[0]], [ci[1] - base.mean]], color="black", marker="o",
                mfc="white", mec="black", ms=10, capsize=4, zorder=5)


def figure2(report: Report, shown: set[str], out: Path) -> list[str]:
    """Figure 2; `shown`: the interpretations whose pattern's verdict is yes (verdicts.captions_shown)."""
    rs = report.random_split
    fig, (top, bot) = plt.subplots(2, 1, figsize=(9, 10.5), sharex=True, gridspec_kw={"hspace": 0.08})
    base = rs.base_b if rs else None
    for ax in (top, bot):
        _layer_axis(ax)
        if base:
            ax.axhline(base.mean, color="black", ls=":", lw=1, zorder=1)
    _figure2_top(top, report)
    # bottom: lines through the means (from the baseB mean at n = 0), with intervals and the shown notes
    if base:
        _base_mark(bot, base)
        bot.annotate(NOTES["baseB"], (0, base.mean), xytext=(0, 12), textcoords="offset points", ha="center",
                     fontsize=9)
    drawn = False
    for label, by_n in (rs.series().items() if rs else ()):
        xs, ys = means(bot, by_n, STYLE[label], label, STYLE[label]["dx"] / 2, (0, base) if base else None)
        if len(xs) > (1 if base else 0):
            drawn = True
            if label in shown:
                _note(bot, label, xs[1:] if base else xs, ys[1:] if base else ys)
    if drawn:
        bot.legend(loc="lower left", fontsize=9, frameon=False, ncol=4)
    else:
        no_data(bot, "no data: no BnB, BnB+, AnB or AnB+ net is counted")
    bot.set_ylabel(YLABEL + "\nmean and 95% interval")
    bot.set_xlabel(XLABEL)
    _pad_y(bot, top=0.35 if shown - {"baseB"} else 0.1)
    ests = [base, *(e for s in (rs.series().values() if rs else ()) for e in s.values())]
    caption = (n_text(ests) + " (split-to-split spread included: the verdicts compare paired differences, "
               "report.md); notes only for patterns whose verdict is yes")
    return save(fig, out, "figure2", note(report), caption)


# ------------------------------------------------------------------------------ Figure 3

def _natman_panel(ax: plt.Axes, report: Report) -> list[Estimate | None]:
    nm = report.natman
    _layer_axis(ax)
    drawn, ests = False, []
    for target, src, ls, dx in (("natural", "manmade", "-", -0.1), ("manmade", "natural", "--", 0.1)):
        if nm is None:
            break
        b, tr = nm.base.get(target), nm.transfer.get(target, {})
        points(ax, dx, b, WHITE, 7)
        if b:
            _base_mark(ax, b, dx)
        for n in NS:
            points(ax, n + dx, tr.get(n), NATMAN, 5)
        xs, _ = means(ax, tr, NATMAN, f"target {target} ({src}→{target})", dx, start=(dx, b) if b else None, ls=ls)
        drawn = drawn or bool(xs)
        ests += [b, *tr.values()]
    if drawn:
        ax.legend(fontsize=8, frameon=False, loc="lower left")
    else:
        no_data(ax, "not in this plan" if _absent(report, "natman") else "no data")
    ax.set_title("Man-made/natural split: base (n=0) and frozen transfer", fontsize=10)
    ax.set_ylabel(YLABEL)
    ax.set_xlabel("Layer n (copied and frozen)")
    return ests


def _random_panel(ax: plt.Axes, report: Report) -> list[Estimate | None]:
    rw = report.random_weights
    _layer_axis(ax)
    classes = f"{rw.classes}-class" if rw and rw.classes else "every-class"
    b = rw.base if rw else None
    drawn = points(ax, 0, b, WHITE, 9, f"{classes} base")
    for n in NS:
        drawn = points(ax, n, rw.by_n.get(n) if rw else None, RANDOM, 6,
                       "random weights, layers 1..n frozen" if n == 1 else None) or drawn
    if b:
        _base_mark(ax, b)
    if rw:
        means(ax, rw.by_n, RANDOM, start=(0, b) if b else None)
    if report.plan == "paper":
        ax.axhline(published.WHOLE_TOP1, color="0.55", ls="--", lw=0.8,
                   label=f"published 1000-class base {published.WHOLE_TOP1:.3f}")
    if drawn:
        ax.legend(fontsize=8, frameon=False, loc="best")
    else:
        no_data(ax, "not in this plan" if _absent(report, "whole", "random_weights") else "no data")
    ax.set_title(f"Random weights (all {rw.classes} classes)" if rw and rw.classes else "Random weights",
                 fontsize=10)
    ax.set_xlabel("Layer n (random and frozen)")
    return [b, *(rw.by_n.values() if rw else ())]


def _normalized_panel(ax: plt.Axes, report: Report) -> list[Estimate | None]:
    _layer_axis(ax, with_base=False)
    ax.axhline(0, color="black", ls=":", lw=1, label="reference (base)")
    nm, rw = report.natman, report.random_weights
    series = [("random A/B split: AnB − baseB", report.random_split_normalized, STYLE["AnB"], -0.12),
              ("man-made/natural: transfer − its base", nm.pooled if nm else {}, NATMAN, 0.0),
              ("random weights − its base", rw.normalized if rw else {}, RANDOM, 0.12)]
    drawn, ests = False, []
    for label, by_n, style, dx in series:
        for n in NS:
            points(ax, n + dx, by_n.get(n), style, 5)
        xs, _ = means(ax, by_n, style, f"mean {label}", dx)
        drawn = drawn or bool(xs)
        ests += list(by_n.values())
    if drawn:
        ax.legend(fontsize=8.5, frameon=False, loc="lower left")
    else:
        no_data(ax)
    ax.set_title("Normalized by base performance", fontsize=10)
    ax.set_ylabel("Relative top-1 accuracy\n(higher is better)")
    ax.set_xlabel(XLABEL)
    return ests


def figure3(report: Report, out: Path) -> list[str]:
    fig = plt.figure(figsize=(11, 9.5))
    gs = fig.add_gridspec(2, 2, hspace=0.3, wspace=0.22)
    ests = _natman_panel(fig.add_subplot(gs[0, 0]), report) + _random_panel(fig.add_subplot(gs[0, 1]), report) \
        + _normalized_panel(fig.add_subplot(gs[1, :]), report)
    fig.suptitle(_title(report, "Figure 3"), y=0.95)
    return save(fig, out, "figure3", note(report), n_text(ests))


# ------------------------------------------------------------------------------ Figure S1

def figureS1(report: Report, out: Path) -> list[str]:
    red = {int(k): v for k, v in report.reduced.items() if v}
    fig, axes = plt.subplots(2, 1, figsize=(8, 9), gridspec_kw={"hspace": 0.3})
    pub_x = sorted(published.TABLE_S1)
    pub_y = [published.TABLE_S1[c] for c in pub_x]
    xs = sorted(red)
    for ax, log in zip(axes, (False, True)):
        ax.plot(pub_x, pub_y, color="0.55", ls="--", marker="x", ms=6, label="published (Table S1)")
        if xs:
            ax.errorbar(xs, [red[c].mean for c in xs], color="black", marker="o", mfc="white", ms=7, capsize=3,
                        yerr=[[red[c].mean - (red[c].ci95 or (red[c].mean,))[0] for c in xs],
                              [(red[c].ci95 or (0, red[c].mean))[1] - red[c].mean for c in xs]],
                        label="this reproduction (mean, 95% interval)")
        else:
            no_data(ax, "reduced-data nets are not in this plan" if _absent(report, "reduced")
                    else "no data: no reduced-data net is counted")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("Number of examples per class" + (" (log)" if log else ""))
        ax.set_ylabel("Top-1 validation accuracy" + (" (log)" if log else ""))
        ax.grid(color="0.9", lw=0.6)
        ax.legend(fontsize=9, frameon=False, loc="upper left" if log else "lower right")
    axes[0].set_title(_title(report, "Figure S1: reduced training data"))
    return save(fig, out, "figureS1", note(report), n_text(red.values()))
