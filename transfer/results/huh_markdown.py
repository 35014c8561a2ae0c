"""Huh et al. 2016's part of report.md: the pre-training sets, Table 1, Table 2 and the 486-class change,
each cell a mean with its 95% interval over replicates, in percent."""
from __future__ import annotations

from typing import Sequence

from . import published
from .huh_tables import KINDS, HuhTables
from .stats import Estimate


def p(e: Estimate | None, signed: bool = False) -> str:
    """`52.2 [50.1, 54.3]` in percent; the mean alone when there is no interval."""
    if e is None:
        return "—"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    ci = f" [{fmt.format(100 * e.ci95[0])}, {fmt.format(100 * e.ci95[1])}]" if e.ci95 else ""
    return fmt.format(100 * e.mean) + ci


def pv(v: float | None, signed: bool = False) -> str:
    return "—" if v is None else (f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}")


def _sets(h: HuhTables) -> list[str]:
    L = ["| pre-training set | kind | labels | images/class | own | readout | "
         + " | ".join(h.targets) + " |", "|---|---|---|---|---|---|" + "---|" * len(h.targets)]
    for ds, s in sorted(h.sets.items(), key=lambda kv: (KINDS.index(kv[1].kind), -kv[1].labels)):
        L.append(f"| {ds} | {s.kind} | {s.labels} | {s.images_per_class or '—'} | {p(s.own)} | "
                 f"{p(s.readout)} | " + " | ".join(p(s.targets[t]) for t in h.targets) + " |")
    return L


def _target(h: HuhTables, t: str, n_line: str) -> list[str]:
    r, pub1 = h.table1[t], published.HUH_TABLE1_SUN
    L = ["", f"### Table 1 (target `{t}`)", "", "| pre-trained on | ours | published (SUN) |", "|---|---|---|",
         f"| original ({h.original}) | {p(r.original)} | {pv(pub1['original'])} |",
         f"| coarse ({r.coarse_set or 'none in plan'}; paper: top-down 127 classes) | {p(r.coarse)} "
         f"| {pv(pub1['coarse'])} |",
         f"| random init | {p(r.random)} | {pv(pub1['random'])} |", "", n_line,
         "", f"### Table 2 (target `{t}`): a fixed image budget", "",
         "| budget | fewer classes (ours) | published | every class, fewer images (ours) | published |",
         "|---|---|---|---|---|"]
    for total, row in sorted(h.table2[t].items(), key=lambda kv: -int(kv[0])):
        pub = published.HUH_TABLE2_SUN.get(int(total), {})
        L.append(f"| {int(total):,} ({row.classes_set or '—'} / {row.images_set or '—'}) | "
                 f"{p(row.classes)} | {pv(pub.get('classes'))} | {p(row.images)} | {pv(pub.get('images'))} |")
    if not h.table2[t]:
        L.append("| — (no fewer-classes budget in the plan) | | | | |")
    L += ["", n_line]
    if h.section51:
        change = h.change486[t]
        ours = f"ours {p(change, signed=True)} points" if change else "ours: not measured (no counted net)"
        L += ["", f"Section 5.1, pre-training on `{h.section51}` instead of `{h.original}`, fine-tuned on "
              f"`{t}`: {ours}; published, 486 bottom-up classes on SUN: {pv(published.HUH_CHANGE_486_SUN, True)} "
              "points."]
    return L


def markdown(h: HuhTables | None, figure_files: Sequence[str]) -> list[str]:
    if not h:
        return []
    n_line = f"*N replicates: {h.replicates()} behind each cell{'; N = 1 has no interval' if h.min_n() == 1 else ''}.*"
    L = ["", "## Huh et al. 2016: what makes ImageNet good for transfer", "",
         "Accuracies in percent at each net's last validation test, mean [95% interval] over replicates. *own*: "
         f"the pre-training net on its own labels; *readout*: layers 1-7 frozen, a new fc8 on `{h.original}`; a "
         "target column: all layers fine-tuned on that dataset. Published numbers are SUN-397's at ImageNet "
         "scale: beside a smaller plan only the pattern compares.", ""]
    for stem in ("huh_classes", "huh_images"):
        if f"{stem}.png" in figure_files:
            L.append(f"![{stem}]({stem}.png)")
    L += ["", "### Table: every pre-training set", ""] + _sets(h) + ["", n_line]
    for t in h.targets:
        L += _target(h, t, n_line)
    return L
