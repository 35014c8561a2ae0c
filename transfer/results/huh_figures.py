"""Huh et al. (2016)'s Figures 1 and 2 from report["huh2016"]: accuracy against the number of pre-training
classes (bottom-up and top-down label sets) and against images per class (per-class budgets)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.ticker import FuncFormatter

from . import published
from .figures import _no_data, _save, plt

COLORS = ["#a01010", "#1f3a93", "#3a9a3a", "#f0901a", "#7a3aa0"]


def _series(h: dict[str, Any], kinds: tuple[str, ...], x_key: str, prefix: str | None) -> dict[str, list]:
    """{curve: [(x, y), ...]} for own/readout/each target over the sets of the given kinds."""
    curves: dict[str, list] = {"readout": []}
    curves.update({f"target {t}": [] for t in h["targets"]})
    for ds, s in h["sets"].items():
        if s["kind"] not in kinds or (prefix and s["kind"] == "labelset" and not ds.startswith(prefix)):
            continue
        x = s[x_key]
        if not x:
            continue
        curves["readout"].append((x, s["readout"]))
        for t in h["targets"]:
            curves[f"target {t}"].append((x, s["targets"][t]))
    return {k: sorted((x, y) for x, y in v if y is not None) for k, v in curves.items()}


def _draw(ax: plt.Axes, curves: dict[str, list], xlabel: str) -> bool:
    drawn = False
    for color, (label, pts) in zip(COLORS, curves.items()):
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, [100 * y for y in ys], "o-", color=color, label=label)
            drawn = True
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")   # 2, 9, 20, 1000: not 2x10^0
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    return drawn


def figures(h: dict[str, Any], out: Path, plan_name: str, note: str | None = None) -> list[str]:
    """The two Huh et al. figures; `note` (the precision) in each one's corner."""
    files: list[str] = []
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    curves = _series(h, ("original", "labelset"), "labels", "bottomup-")
    if _draw(ax, curves, "number of pre-training classes (bottom-up label sets)"):
        for ds, s in h["sets"].items():   # top-down sets: marked apart, as Table 1
            if s["kind"] == "labelset" and ds.startswith("topdown-"):
                for t, color in zip(h["targets"], COLORS[1:]):
                    if s["targets"][t] is not None:
                        ax.plot([s["labels"]], [100 * s["targets"][t]], "*", ms=12, color=color,
                                label=f"{ds} -> {t}")
        if plan_name == "huh2016":
            pub = published.HUH_TABLE1_SUN
            ax.plot([1000, 127], [100 * pub["original"], 100 * pub["coarse"]], "s", mfc="none", color="0.3",
                    label="published SUN (Table 1)")
        ax.legend(fontsize=8)
    else:
        _no_data(ax)
    ax.set_title(f"Accuracy vs pre-training classes (plan {plan_name})")
    files += _save(fig, out, "huh_classes", note)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    curves = _series(h, ("original", "images"), "images_per_class", None)
    if _draw(ax, curves, "pre-training images per class"):
        if plan_name == "huh2016":
            pub = published.HUH_TABLE2_SUN
            xs = [1000] + [t // 1000 for t in pub]
            ys = [published.HUH_TABLE1_SUN["original"]] + [row["images"] for row in pub.values()]
            ax.plot(xs, [100 * y for y in ys], "s", mfc="none", color="0.3", label="published SUN (Tables 1, 2)")
        ax.legend(fontsize=8)
    else:
        _no_data(ax)
    ax.set_title(f"Accuracy vs images per class (plan {plan_name})")
    files += _save(fig, out, "huh_images", note)
    return files
