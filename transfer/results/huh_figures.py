"""Huh et al. (2016)'s Figures 1 and 2 from the typed tables (huh_tables.HuhTables): accuracy against the
number of pre-training classes (bottom-up and top-down label sets) and against images per class (per-class
budgets), each point a mean over replicates with its 95% interval."""
from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import FuncFormatter

from . import published
from .figures import n_text, no_data, plt, save
from .huh_tables import HuhTables
from .stats import Estimate

COLORS = ["#a01010", "#1f3a93", "#3a9a3a", "#f0901a", "#7a3aa0"]
Curve = list[tuple[int, Estimate]]


def _series(h: HuhTables, kinds: tuple[str, ...], by_labels: bool) -> dict[str, Curve]:
    """{curve: [(x, estimate), ...]} for the readout and each target over the sets of the given kinds
    (the plan's `coarse` set, Table 1's top-down row, is marked apart instead)."""
    curves: dict[str, Curve] = {"readout": []}
    curves.update({f"target {t}": [] for t in h.targets})
    for ds, s in h.sets.items():
        if s.kind not in kinds or ds == h.coarse:
            continue
        x = s.labels if by_labels else s.images_per_class
        if not x:
            continue
        if s.readout:
            curves["readout"].append((x, s.readout))
        for t in h.targets:
            if s.targets[t]:
                curves[f"target {t}"].append((x, s.targets[t]))  # type: ignore[arg-type]
    return {k: sorted(v, key=lambda p: p[0]) for k, v in curves.items()}


def _draw(ax: plt.Axes, curves: dict[str, Curve], xlabel: str) -> bool:
    drawn = False
    for color, (label, pts) in zip(COLORS, curves.items()):
        if pts:
            xs = [x for x, _ in pts]
            ys = [100 * e.mean for _, e in pts]
            err = [[100 * (e.mean - e.ci95[0]) if e.ci95 else 0 for _, e in pts],
                   [100 * (e.ci95[1] - e.mean) if e.ci95 else 0 for _, e in pts]]
            ax.errorbar(xs, ys, yerr=err, fmt="o-", color=color, capsize=3, label=label)
            drawn = True
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")   # 2, 9, 20, 1000: not 2x10^0
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%), mean and 95% interval")
    ax.grid(alpha=0.3)
    return drawn


def _all(curves: dict[str, Curve]) -> list[Estimate]:
    return [e for pts in curves.values() for _, e in pts]


def figures(h: HuhTables, out: Path, plan_name: str, corner: str | None = None) -> list[str]:
    """The two Huh et al. figures; `corner` (the precision) in each one's corner, N in the other."""
    files: list[str] = []
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    curves = _series(h, ("original", "labelset"), True)
    if _draw(ax, curves, "number of pre-training classes (label sets)"):
        s = h.sets.get(h.coarse or "")
        for t, color in zip(h.targets, COLORS[1:]):   # the plan's `coarse` set: marked apart, as Table 1
            if s is not None and s.targets[t] is not None:
                ax.plot([s.labels], [100 * s.targets[t].mean], "*", ms=12, color=color,  # type: ignore[union-attr]
                        label=f"{h.coarse} -> {t} (Table 1's coarse row)")
        if plan_name == "huh2016":
            pub = published.HUH_TABLE1_SUN
            ax.plot([1000, 127], [100 * pub["original"], 100 * pub["coarse"]], "s", mfc="none", color="0.3",
                    label="published SUN (Table 1)")
        ax.legend(fontsize=8)
    else:
        no_data(ax)
    ax.set_title(f"Accuracy vs pre-training classes (plan {plan_name})")
    files += save(fig, out, "huh_classes", corner, n_text(_all(curves)))

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    curves = _series(h, ("original", "images"), False)
    if _draw(ax, curves, "pre-training images per class"):
        if plan_name == "huh2016":
            pub2 = published.HUH_TABLE2_SUN
            xs = [1000] + [t // 1000 for t in pub2]
            ys = [published.HUH_TABLE1_SUN["original"]] + [row["images"] for row in pub2.values()]
            ax.plot(xs, [100 * y for y in ys], "s", mfc="none", color="0.3", label="published SUN (Tables 1, 2)")
        ax.legend(fontsize=8)
    else:
        no_data(ax)
    ax.set_title(f"Accuracy vs images per class (plan {plan_name})")
    files += save(fig, out, "huh_images", corner, n_text(_all(curves)))
    return files
