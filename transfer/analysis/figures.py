"""Figures of the analysis, drawn from an AnalysisResult alone (so a report redraws them in seconds):

cka_<family>.png   layer-by-layer CKA heat maps, one panel per pair group of a plan family; copied layers
                   outlined; the references (baseA vs baseB, replicates, random init) in the first panel
cka_vs_n.png       beside Figure 2: CKA with baseB at layer n (the last copied layer) and at layer n + 1
                   (the first layer trained anew) for BnB, BnB+, AnB, AnB+, with baseA vs baseB
movement.png       relative weight movement of the copied layers of fine-tuned nets, per n
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ..core.figfiles import save_figure  # noqa: E402
from ..core.palette import STYLE  # noqa: E402  (the paper's markers and colours, as Figure 2)
from .summary import MoveRow, move_rows  # noqa: E402
from .result import AnalysisResult, Group, Row, Stat  # noqa: E402

REFERENCE_KINDS = ("base-base", "init-init", "replicate", "init-final")
CMAP = "viridis"
NS = list(range(1, 8))


def _save(fig: plt.Figure, out: Path, stem: str, note: str) -> list[str]:
    """PNG and PDF, each to a temp file renamed into place (a reader never sees half a file)."""
    fig.text(0.99, 0.0, note, ha="right", va="top", fontsize=7, color="0.35")   # below everything
    return save_figure(fig, out, stem, dpi=130)


def _note(res: AnalysisResult, family: str | None = None) -> str:
    used = {p.image_set for p in res.pairs if family is None or p.pair.family == family}
    sets = ", ".join(f"{v['count']} of {v['name']}" for k, v in res.image_sets.items() if k in used)
    return (f"plan {res.plan}: linear CKA, unbiased minibatch estimator; validation images: {sets}; "
            f"batches of {res.settings['batch']}, seed {res.settings['seed']}")


def _row_label(row: Row, group: Group) -> str:
    count = max((st.count for st in row.layers.values()), default=0)
    label = row.label if group.kind not in REFERENCE_KINDS or group.kind == "replicate" else \
        {"base-base": "baseA vs baseB", "init-init": "baseA vs baseB, untrained",
         "init-final": "base untrained vs trained"}[group.kind]
    return label + (f" (N={count})" if count > 1 else "")


def _heat(ax: plt.Axes, rows: list[tuple[str, Row, int | None]], layers: list[str], title: str,
          vmin: float = 0.0, vmax: float = 1.0, value=lambda st: st.mean) -> matplotlib.image.AxesImage:
    """One heat map: a row per (label, row, copied layers), a column per layer, values written in."""
    data = np.array([[np.nan if value(r.layers[l]) is None else value(r.layers[l]) for l in layers]
                     for _, r, _ in rows], dtype=float)
    im = ax.imshow(np.ma.masked_invalid(data), cmap=CMAP, vmin=vmin, vmax=vmax, aspect="auto")
    cmap = plt.get_cmap(CMAP)
    for i, (_, _, copied) in enumerate(rows):
        for j in range(len(layers)):
            v = data[i, j]
            if np.isfinite(v):
                shade = cmap((v - vmin) / max(vmax - vmin, 1e-12))
                light = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] > 0.5
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7.5,
                        color="black" if light else "white")
            else:
                ax.text(j, i, "—", ha="center", va="center", fontsize=7.5, color="0.5")
        if copied:
            ax.add_patch(Rectangle((-0.5, i - 0.5), copied, 1, fill=False, ec="#ff3030", lw=1.4))
    ax.set_xticks(range(len(layers)), layers, fontsize=8)
    ax.set_yticks(range(len(rows)), [label for label, _, _ in rows], fontsize=8)
    ax.set_title(title, fontsize=9.5, loc="left")
    ax.tick_params(length=0)
    return im


def _copied(group: Group, row: Row) -> int | None:
    return row.n if group.kind in ("vs-target", "vs-source") else None


def heatmaps(res: AnalysisResult, out: Path) -> list[str]:
    """One figure per plan family: a reference panel, then a panel per group of copying nets."""
    files = []
    for family in dict.fromkeys(g.family for g in res.groups):
        groups = [g for g in res.groups if g.family == family]
        refs = [(_row_label(r, g), r, None) for g in groups if g.kind in REFERENCE_KINDS for r in g.rows]
        panels = ([("references: whole nets compared", refs)] if refs else []) + \
            [(g.name, [(_row_label(r, g), r, _copied(g, r)) for r in g.rows])
             for g in groups if g.kind not in REFERENCE_KINDS]
        cols = 1 if len(panels) == 1 else 2
        nrows = -(-len(panels) // cols)
        height = [max(len(rows) for _, rows in panels[i * cols:(i + 1) * cols]) * 0.32 + 0.9
                  for i in range(nrows)]
        fig, axes = plt.subplots(nrows, cols, figsize=(6.4 * cols, sum(height) + 0.8), squeeze=False,
                                 layout="constrained", gridspec_kw={"height_ratios": height})
        im = None
        for ax, (title, rows) in zip(axes.flat, panels):
            im = _heat(ax, rows, res.layers, title)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.suptitle(f"Linear CKA between nets, layer by layer ({family}); red box: layers copied from the "
                     f"base", fontsize=10.5)
        fig.colorbar(im, ax=axes, shrink=0.6, label="CKA (1 = the same representation up to rotation and scale)")
        files += _save(fig, out, f"cka_{family}", _note(res, family))
    return files


def _series(res: AnalysisResult, group: str, offset: int) -> tuple[list[int], list[Stat]]:
    """(n, the Stat at layer n + offset) of a group's rows."""
    g = res.group(group)
    pts = []
    for row in g.rows if g else []:
        idx = (row.n or 0) - 1 + offset
        if row.n in NS and 0 <= idx < len(res.layers) and row.layers[res.layers[idx]].mean is not None:
            pts.append((row.n, row.layers[res.layers[idx]]))
    return [n for n, _ in pts], [s for _, s in pts]


def _errorbars(ax: plt.Axes, xs: list[float], stats: list[Stat], **kw) -> None:
    ys = [s.mean for s in stats]
    lo = [s.mean - s.lo if s.lo is not None else 0 for s in stats]
    hi = [s.hi - s.mean if s.hi is not None else 0 for s in stats]
    ax.errorbar(xs, ys, yerr=[lo, hi], capsize=2.5, elinewidth=0.9, **kw)


def cka_vs_n(res: AnalysisResult, out: Path, family: str = "random_split") -> list[str]:
    """Beside Figure 2: the CKA of each treatment with baseB at the cut (layer n) and just above it."""
    base = res.group(f"baseA vs baseB ({family})")
    null = res.group(f"baseA vs baseB, both untrained ({family})")
    if not any(res.group(f"{t} vs baseB ({family})") for t in STYLE if t != "baseB"):
        return []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True, layout="constrained")
    for ax, offset, title in ((axes[0], 0, "at layer n: the last layer copied from the base"),
                              (axes[1], 1, "at layer n+1: the first layer trained anew")):
        for ref, style, label in ((base, dict(color="black", ls="--"), "baseA vs baseB (same layer)"),
                                  (null, dict(color="0.55", ls=":"), "baseA vs baseB, both untrained")):
            stats = [ref.rows[0].layers[res.layers[n - 1 + offset]] for n in NS if n - 1 + offset < 8] if ref else []
            if stats and all(s.mean is not None for s in stats):
                ax.plot(NS[:len(stats)], [s.mean for s in stats], lw=1.2, label=label, **style)
        for t in ("BnB", "BnB+", "AnB", "AnB+"):
            xs, stats = _series(res, f"{t} vs baseB ({family})", offset)
            if xs:
                st = STYLE[t]
                _errorbars(ax, [x + st["dx"] for x in xs], stats, color=st["color"], marker=st["marker"],
                           mfc=st["mfc"], mec=st["mec"], ms=7, lw=1.6, label=f"{t} vs baseB")
        ax.set_xticks(NS)
        ax.set_xlim(0.5, 7.5)
        ax.set_ylim(-0.02, 1.05)
        ax.grid(axis="y", color="0.9", lw=0.6)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("Layer n at which network is chopped and retrained")
    axes[0].set_ylabel("Linear CKA with baseB (1 = same representation)")
    axes[1].legend(loc="lower left", fontsize=8, frameon=False)
    fig.suptitle(f"Inside the nets of Figure 2 ({family}): bars are 95% intervals over nets, or over image "
                 "batches where one net", fontsize=10)
    return _save(fig, out, "cka_vs_n", _note(res, family))


def movement(res: AnalysisResult, out: Path) -> list[str]:
    """Relative movement of the copied layers of every fine-tuned treatment (fresh layers in grey)."""
    rows_by = move_rows(res.movement, res.layers, res.settings["resamples"], res.settings["seed"])
    panels = [(name, rows) for name, rows in rows_by.items() if any(r.frozen < r.copied for r in rows)]
    if not panels:
        return []
    vmax = max([r.layers[l].mean for _, rows in panels for r in rows for l in res.layers[:r.copied]
                if r.layers[l].mean is not None] + [1e-6])
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.0 + sum(len(r) * 0.4 + 0.9 for _, r in panels)),
                             squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": [len(r) * 0.4 + 0.9 for _, r in panels]})
    im = None
    for ax, (name, rows) in zip(axes[:, 0], panels):
        im = _move_panel(ax, rows, res.layers, name, vmax)
    fig.colorbar(im, ax=axes[:, 0], shrink=0.8, label="relative movement")
    fig.suptitle("||W_final - W_init|| / ||W_init||: how far fine-tuning moved the copied layers (red box);\n"
                 "fresh layers, trained from random weights, in grey", fontsize=9.5)
    return _save(fig, out, "movement", _note(res))


def _move_panel(ax: plt.Axes, rows: list[MoveRow], layers: list[str], title: str, vmax: float):
    data = np.full((len(rows), len(layers)), np.nan)
    for i, r in enumerate(rows):
        for j, l in enumerate(layers[:r.copied]):
            data[i, j] = np.nan if r.layers[l].mean is None else r.layers[l].mean
    im = ax.imshow(np.ma.masked_invalid(data), cmap="magma_r", vmin=0, vmax=vmax, aspect="auto")
    for i, r in enumerate(rows):
        for j, l in enumerate(layers):
            v = r.layers[l].mean
            if v is None:
                continue
            copied = j < r.copied
            dark = copied and v / vmax > 0.55
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7.5,
                    color=("white" if dark else "black") if copied else "0.55")
        ax.add_patch(Rectangle((-0.5, i - 0.5), r.copied, 1, fill=False, ec="#ff3030", lw=1.4))
    ax.set_xticks(range(len(layers)), layers, fontsize=8)
    ax.set_yticks(range(len(rows)), [r.label for r in rows], fontsize=8)
    ax.set_title(title, fontsize=9.5, loc="left")
    ax.tick_params(length=0)
    return im


def draw(res: AnalysisResult, out: Path) -> list[str]:
    """Every figure of the analysis into `out`; returns the file names written."""
    return heatmaps(res, out) + cka_vs_n(res, out) + movement(res, out)
