"""The paper's figures, drawn from report data (the dict that becomes report.json).

figure2: random A/B splits (top: every net; bottom: lines through the means, interpretations 2-5)
figure3: man-made/natural, random weights, and both normalized by their base (with the random split)
figureS1: reduced data, linear and log axes, beside the published Table S1
curves:  validation accuracy vs iteration of every net, one panel per treatment group
Each figure draws whatever data exist and says "no data" where a panel has none.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import published  # noqa: E402
from .files import publish  # noqa: E402

matplotlib.rcParams["pdf.fonttype"] = 42  # TrueType in PDFs, as the released notebook did

NS = list(range(1, 8))
XLABEL = "Layer n at which network is chopped and retrained"
YLABEL = "Top-1 accuracy (higher is better)"
# The paper's look: white base circles, dark/light blue selffer dots, dark/light red transfer diamonds.
STYLE: dict[str, dict[str, Any]] = {
    "baseB": dict(marker="o", mfc="white", mec="black", color="black", dx=0.0),
    "BnB": dict(marker="o", mfc="#1f3a93", mec="#1f3a93", color="#1f3a93", dx=-0.21),
    "BnB+": dict(marker="o", mfc="#8ab8ee", mec="#5b8fd0", color="#6fa3e3", dx=-0.07),
    "AnB": dict(marker="D", mfc="#a01010", mec="#a01010", color="#a01010", dx=0.07),
    "AnB+": dict(marker="D", mfc="#f4a0a0", mec="#e07070", color="#e88080", dx=0.21),
}
NATMAN_COLOR = "#f0901a"
RANDOM_COLOR = "#3a9a3a"
NOTES = {  # Section 4.1's numbered interpretations, as labelled in the paper's bottom panel
    "baseB": "1: baseB",
    "BnB": "2: Performance drops\ndue to fragile co-adaptation",
    "BnB+": "3: Fine-tuning recovers\nco-adapted interactions",
    "AnB": "4: Performance drops due to\nrepresentation specificity",
    "AnB+": "5: Transfer + fine-tuning\nimproves generalization",
}


def _absent(report: dict[str, Any], *families: str) -> bool:
    """True when the plan has none of these families (so a panel says so, not just "no data")."""
    fams = report.get("families")
    return fams is not None and not set(families) & set(fams)


def _whole_classes(report: dict[str, Any]) -> tuple[str, str]:
    """(base label, classes) of the whole-set base and random-weights nets, for titles:
    ("1000-class base", "all 1000 classes") for ImageNet; generic words when the report lacks counts."""
    counts = {e.get("classes") for e in report.get("nets", {}).values()
              if e.get("family") in ("whole", "random_weights") and e.get("classes")}
    if len(counts) != 1:
        return "whole-set base", "every class"
    n = counts.pop()
    return f"{n}-class base", f"all {n} classes"


def _no_data(ax: plt.Axes, what: str = "no data") -> None:
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.4")


def precision_note(report: dict[str, Any]) -> str:
    """What every figure says in its corner: how the numbers were computed (report["precision"])."""
    return f"precision: {(report.get('precision') or {}).get('label', 'unknown')}"


def _save(fig: plt.Figure, out: Path, stem: str, note: str | None = None) -> list[str]:
    """PNG and PDF, each written to a temp file and renamed, so a reader never sees half a file.
    `note` (the precision) goes in the bottom right corner."""
    if note:
        fig.text(0.99, 0.005, note, ha="right", va="bottom", fontsize=7, color="0.35")
    written = []
    for ext, kw in (("png", {"dpi": 150}), ("pdf", {})):
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".{ext}", dir=out)
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, bbox_inches="tight", **kw)
            publish(tmp, out / f"{stem}.{ext}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(f"{stem}.{ext}")
    plt.close(fig)
    return written


def _nets(k: int) -> str:
    return f"{k} net" if k == 1 else f"{k} nets"


def _layer_axis(ax: plt.Axes, with_base: bool = True) -> None:
    ax.set_xticks(range(0, 8) if with_base else NS)
    ax.set_xlim(-0.5 if with_base else 0.5, 7.5)
    ax.grid(axis="y", color="0.9", lw=0.6)
    ax.set_axisbelow(True)


def _points(ax: plt.Axes, x: float, g: dict | None, style: dict, size: float = 7, label: str | None = None) -> bool:
    if not g:
        return False
    ax.plot([x] * len(g["points"]), g["points"], ls="none", marker=style["marker"], mfc=style["mfc"],
            mec=style["mec"], ms=size, mew=1.0, label=label, zorder=3)
    return True


def _series(by_n: dict[str, Any]) -> tuple[list[int], list[float]]:
    xs = [n for n in NS if by_n.get(str(n))]
    return xs, [by_n[str(n)]["mean"] for n in xs]


# ------------------------------------------------------------------------------ Figure 2

# The three figure functions are long on purpose: each draws one published figure panel by panel,
# top to bottom, and reads best as one page beside the paper's figure.
def figure2(report: dict[str, Any], out: Path) -> list[str]:
    rs = report["random_split"]
    fig, (top, bot) = plt.subplots(2, 1, figsize=(9, 10), sharex=True, gridspec_kw={"hspace": 0.08})
    base = rs.get("baseB")
    any_data = False
    for ax in (top, bot):
        _layer_axis(ax)
        if base:
            ax.axhline(base["mean"], color="black", ls=":", lw=1, zorder=1)
    # top: every net, shifted left/right by treatment for visual clarity (as in the paper)
    if _points(top, 0, base, STYLE["baseB"], 9, f"baseB ({_nets(base['count'])})" if base else None):
        any_data = True
    for label in ("BnB", "BnB+", "AnB", "AnB+"):
        st = STYLE[label]
        count = sum(rs[label][str(n)]["count"] for n in NS if rs[label].get(str(n)))
        first = True
        for n in NS:
            if _points(top, n + st["dx"], rs[label].get(str(n)), st, 7,
                       f"{label} ({_nets(count)})" if first else None):
                first = False
                any_data = True
    if report.get("plan") == "paper":
        top.axhline(published.BASE_B_TOP1, color="0.55", ls="--", lw=0.8, zorder=1,
                    label=f"published baseB {published.BASE_B_TOP1}")
    if any_data:
        top.legend(loc="lower left", fontsize=9, numpoints=1, frameon=False, ncol=2)
    else:
        _no_data(top, "no data: no random-split net has validation results")
    top.set_ylabel(YLABEL)
    top.set_title(f"Figure 2: random A/B splits (plan {report.get('plan')})")

    # bottom: lines through the means, starting at the baseB mean at n=0, with the paper's notes
    if base:
        bot.plot([0], [base["mean"]], ls="none", marker="o", mfc="white", mec="black", ms=10, zorder=4)
        bot.annotate(NOTES["baseB"], (0, base["mean"]), xytext=(0, 10), textcoords="offset points",
                     ha="center", fontsize=9)
    drawn = False
    for label in ("BnB", "BnB+", "AnB", "AnB+"):
        st = STYLE[label]
        xs, ys = _series(rs[label])
        if not xs:
            continue
        drawn = True
        lx, ly = ([0] + xs, [base["mean"]] + ys) if base else (xs, ys)
        bot.plot(lx, ly, color=st["color"], lw=2, marker=st["marker"], mfc=st["mfc"], mec=st["mec"],
                 ms=7, label=label, zorder=3)
        _note(bot, label, xs, ys)
    if drawn:
        bot.legend(loc="lower left", fontsize=9, frameon=False, ncol=4)
    else:
        _no_data(bot)
    bot.set_ylabel(YLABEL)
    bot.set_xlabel(XLABEL)
    _pad_y(bot, top=0.35)
    return _save(fig, out, "figure2", precision_note(report))


def _note(ax: plt.Axes, label: str, xs: list[int], ys: list[float]) -> None:
    """Place an interpretation next to the part of its line the paper's note points at."""
    def nearest(x: float) -> int:
        return int(np.argmin([abs(v - x) for v in xs]))
    # 5 over the left half of AnB+, 3 over the right half of BnB+, so the two never collide
    pick = {"BnB": lambda: int(np.argmin(ys)), "AnB": lambda: len(xs) - 1,
            "BnB+": lambda: nearest(6), "AnB+": lambda: nearest(3)}[label]()
    off, ha, va = {"BnB": ((-4, -26), "right", "top"), "AnB": ((-14, -6), "right", "top"),
                   "BnB+": ((0, 34), "center", "bottom"), "AnB+": ((0, 26), "center", "bottom")}[label]
    if label == "BnB" and xs[pick] <= 2:  # a dip near the left edge: write the note to its right
        off, ha = (10, -26), "left"
    ax.annotate(NOTES[label], (xs[pick], ys[pick]), xytext=off, textcoords="offset points",
                ha=ha, va=va, fontsize=8.5, color=STYLE[label]["color"],
                arrowprops=dict(arrowstyle="-", color=STYLE[label]["color"], lw=0.6, shrinkB=4))


def _pad_y(ax: plt.Axes, top: float = 0.15, bottom: float = 0.2) -> None:
    lo, hi = ax.get_ylim()
    span = hi - lo
    ax.set_ylim(lo - bottom * span, hi + top * span)


# ------------------------------------------------------------------------------ Figure 3

def figure3(report: dict[str, Any], out: Path) -> list[str]:  # long: one figure, panel by panel (above)
    nm, rw = report["natman"], report["random_weights"]
    fig = plt.figure(figsize=(11, 9))
    gs = fig.add_gridspec(2, 2, hspace=0.3, wspace=0.22)
    ax_nm, ax_rw, ax_norm = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, :])
    hexa = dict(marker="h", mfc=NATMAN_COLOR, mec="#b06000")
    white = dict(marker="o", mfc="white", mec="black")
    green = dict(marker="s", mfc=RANDOM_COLOR, mec="#206020")

    # top left: man-made/natural bases and frozen transfer; a line per target task
    _layer_axis(ax_nm)
    drawn = False
    for target, src, ls in (("natural", "manmade", "-"), ("manmade", "natural", "--")):
        b = nm["base"].get(target)
        _points(ax_nm, 0, b, white, 9)
        _points_by_n(ax_nm, nm["transfer"].get(target, {}), hexa)
        xs, ys = _series(nm["transfer"].get(target, {}))
        if b:
            xs, ys = [0] + xs, [b["mean"]] + ys
        if xs:
            drawn = True
            ax_nm.plot(xs, ys, color="#b06000", ls=ls, lw=1.5, label=f"target {target} ({src}→{target})")
    if drawn:
        ax_nm.legend(fontsize=8, frameon=False, loc="lower left")
    else:
        _no_data(ax_nm, "not in this plan" if _absent(report, "natman") else "no data")
    ax_nm.set_title("Man-made/natural split: base (n=0) and frozen transfer", fontsize=10)
    ax_nm.set_ylabel(YLABEL)
    ax_nm.set_xlabel("Layer n (copied and frozen)")

    # top right: random, frozen layers 1..n on every class vs the whole-set base
    _layer_axis(ax_rw)
    b = rw.get("base")
    whole_base, whole = _whole_classes(report)
    drawn = _points(ax_rw, 0, b, white, 9, whole_base)
    if _points_by_n(ax_rw, rw, green, "random weights, layers 1..n frozen"):
        drawn = True
    xs, ys = _series(rw)
    if b:
        xs, ys = [0] + xs, [b["mean"]] + ys
    if len(xs) > 1:
        ax_rw.plot(xs, ys, color=RANDOM_COLOR, lw=1.5)
    if report.get("plan") == "paper":
        ax_rw.axhline(published.WHOLE_TOP1, color="0.55", ls="--", lw=0.8,
                      label=f"published 1000-class base {published.WHOLE_TOP1:.3f}")
    if drawn:
        ax_rw.legend(fontsize=8, frameon=False, loc="center right")
    else:
        _no_data(ax_rw, "not in this plan" if _absent(report, "whole", "random_weights") else "no data")
    ax_rw.set_title(f"Random weights ({whole})", fontsize=10)
    ax_rw.set_xlabel("Layer n (random and frozen)")

    # bottom: each relative to its own base
    _layer_axis(ax_norm, with_base=False)
    ax_norm.axhline(0, color="black", ls=":", lw=1, label="reference (base)")
    drawn = False
    series = [("random A/B split: AnB − baseB", _norm_rs(report), STYLE["AnB"], STYLE["AnB"]["color"], -0.12),
              ("man-made/natural: transfer − its base", _pool_natman(nm), hexa, "#b06000", 0.0),
              (f"random weights − {whole_base}", rw.get("normalized", {}), green, RANDOM_COLOR, 0.12)]
    for label, by_n, style, color, dx in series:
        if _points_by_n(ax_norm, by_n, style, None, dx):
            drawn = True
            xs, ys = _series(by_n)
            ax_norm.plot([x + dx for x in xs], ys, color=color, lw=1.8, label=f"mean {label}")
    if drawn:
        ax_norm.legend(fontsize=8.5, frameon=False, loc="lower left")
    else:
        _no_data(ax_norm)
    ax_norm.set_title("Normalized by base performance", fontsize=10)
    ax_norm.set_ylabel("Relative top-1 accuracy\n(higher is better)")
    ax_norm.set_xlabel("Layer n at which network is chopped and retrained")
    fig.suptitle(f"Figure 3 (plan {report.get('plan')})", y=0.95)
    return _save(fig, out, "figure3", precision_note(report))


def _points_by_n(ax: plt.Axes, by_n: dict[str, Any], style: dict, label: str | None = None, dx: float = 0.0) -> bool:
    drawn = False
    for n in NS:
        if _points(ax, n + dx, by_n.get(str(n)), style, 7, label if not drawn else None):
            drawn = True
    return drawn


def _norm_rs(report: dict[str, Any]) -> dict[str, Any]:
    return report.get("random_split_normalized") or {}


def _pool_natman(nm: dict[str, Any]) -> dict[str, Any]:
    """Both directions' normalized points pooled per n (the paper's hexagons)."""
    out: dict[str, Any] = {}
    for n in NS:
        pts = [p for t in ("manmade", "natural") if (nm["normalized"].get(t) or {}).get(str(n))
               for p in nm["normalized"][t][str(n)]["points"]]
        out[str(n)] = {"points": pts, "mean": float(np.mean(pts))} if pts else None
    return out


# ------------------------------------------------------------------------------ Figure S1

def figureS1(report: dict[str, Any], out: Path) -> list[str]:
    red = {int(k): v for k, v in report.get("reduced", {}).items() if v}
    fig, axes = plt.subplots(2, 1, figsize=(8, 9), gridspec_kw={"hspace": 0.3})
    pub_x = sorted(published.TABLE_S1)
    pub_y = [published.TABLE_S1[c] for c in pub_x]
    xs = sorted(red)
    for ax, log in zip(axes, (False, True)):
        ax.plot(pub_x, pub_y, color="0.55", ls="--", marker="x", ms=6, label="published (Table S1)")
        if xs:
            ax.plot(xs, [red[c]["mean"] for c in xs], color="black", marker="o", mfc="white", ms=7,
                    label="this reproduction")
        else:
            _no_data(ax, "reduced-data nets are not in this plan" if _absent(report, "reduced")
                     else "no data: no reduced-data net has validation results")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("Number of examples per class" + (" (log)" if log else ""))
        ax.set_ylabel("Top-1 validation accuracy" + (" (log)" if log else ""))
        ax.grid(color="0.9", lw=0.6)
        ax.legend(fontsize=9, frameon=False, loc="lower right")
    axes[0].set_title(f"Figure S1: reduced training data (plan {report.get('plan')})")
    return _save(fig, out, "figureS1", precision_note(report))


# ------------------------------------------------------------------------------ learning curves

CURVE_GROUPS = [  # (title, family, treatments)
    ("random split: base nets", "random_split", ("base",)),
    ("BnB (selffer, frozen)", "random_split", ("selffer",)),
    ("BnB+ (selffer, fine-tuned)", "random_split", ("selffer_ft",)),
    ("AnB (transfer, frozen)", "random_split", ("transfer",)),
    ("AnB+ (transfer, fine-tuned)", "random_split", ("transfer_ft",)),
    ("man-made/natural", "natman", ("base", "transfer", "transfer_ft", "selffer", "selffer_ft")),
    ("whole-set base and random weights", None, ("whole", "random_weights")),
    ("reduced data", "reduced", ("reduced",)),
]


def curves(report: dict[str, Any], series: dict[str, dict[str, Any]], out: Path) -> list[str]:  # one figure
    """`series`: net name -> {family, treatment, n, iters, acc} (validation accuracy curves)."""
    groups = []
    for title, family, treatments in CURVE_GROUPS:
        if family is None:
            members = {k: v for k, v in series.items() if v["family"] in treatments}
        else:
            members = {k: v for k, v in series.items() if v["family"] == family and v["treatment"] in treatments}
        if members:
            groups.append((title, members))
    ncol = 2 if len(groups) > 1 else 1
    nrow = max(1, -(-len(groups) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.5 * ncol, 3.6 * nrow), squeeze=False, layout="constrained")
    cmap, cmap_red = plt.get_cmap("viridis"), plt.get_cmap("plasma")
    for ax, (title, members) in zip(axes.flat, groups):
        legend = len(members) <= 12
        for name in sorted(members, key=lambda k: (members[k].get("n") or 0, k)):
            s = members[name]
            n = s.get("n")
            if s["family"] == "reduced":  # colour by images per class, log scale
                count = int(name.rsplit("-", 1)[-1])
                color = cmap_red(0.85 * np.log(count) / np.log(1300))
            else:
                color = cmap((n - 1) / 6) if n else "black"
            ls = "--" if s["family"] == "natman" and s.get("target") == "manmade" else "-"
            ax.plot(s["iters"], s["acc"], lw=1, color=color, ls=ls, alpha=0.85, label=name if legend else None)
        ax.set_title(f"{title} ({_nets(len(members))})", fontsize=10)
        ax.set_xlabel("Iteration")
        ax.set_ylabel("Validation top-1 accuracy")
        ax.grid(color="0.92", lw=0.6)
        if legend:
            ax.legend(fontsize=6.5, frameon=False, ncol=2 if len(members) > 6 else 1)
    if any(len(m) > 12 for _, m in groups):
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(1, 7))
        fig.colorbar(sm, ax=axes.ravel().tolist(), label="layer n (dashed: target man-made)", shrink=0.5)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_axis_off()
    if not groups:
        axes[0, 0].set_axis_on()
        _no_data(axes[0, 0], "no data: no net has validation results")
    fig.suptitle(f"Learning curves (plan {report.get('plan')})")
    return _save(fig, out, "curves", precision_note(report))
