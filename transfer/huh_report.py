"""The numbers of Huh et al. (2016) from a plan's nets: Table 1, Table 2, the 486-class change, and the
series behind the accuracy-vs-classes and accuracy-vs-images-per-class figures (transfer/huh_figures.py).

Every pre-training net (family `huh2016`) has its own accuracy (on its own labels), its readout accuracy
(a new fc8 on the original classes, layers 1-7 frozen) and, per target dataset, the accuracy of the net
fine-tuned from it. A net's number is its accuracy at its last validation test (the trained net's, as the
paper reports it), not the first paper's mean of the top-k tests.
"""
from __future__ import annotations

import math
from typing import Any

from . import budgets, published
from .metrics import NetMetric
from .plan import Net, Plan

KINDS = ("original", "labelset", "images", "classes")


def _kind(net: Net, original: str) -> tuple[str, int | None]:
    """(kind of pre-training set, images per class where the set fixes it)."""
    ds = net.target
    if ds == original:
        return "original", None
    m = budgets.IMAGES_RE.fullmatch(ds)
    if m:
        return "images", int(m.group(1))
    b = budgets.budget_total(ds)
    if b:
        return ("images", b[0] // net.num_classes) if b[1] == "images" else ("classes", None)
    return "labelset", None


def _value(per_net: dict[str, NetMetric], name: str | None) -> float | None:
    """A trained net's accuracy as Huh et al. report it: at its last validation test."""
    if name not in per_net:
        return None
    m = per_net[name]
    return m.final if math.isfinite(m.final) else None


def compute(plan: Plan, per_net: dict[str, NetMetric]) -> dict[str, Any] | None:
    """report["huh2016"], or None when the plan has no Huh pre-training nets."""
    pre = [n for n in plan.nets if n.family == "huh2016" and n.treatment == "base"]
    if not pre:
        return None
    readout_on = next((n.target for n in plan.nets if n.treatment == "readout"), None)
    original = readout_on or next(n.target for n in pre if n.val_dataset == n.target)
    # a plan with the first paper's whole-set base too shares it as Huh's original-set net
    pre += [n for n in plan.nets if n.family == "whole" and n.target == original and n not in pre]
    full_per_class = plan.synthetic.train_per_class if plan.synthetic else 1000
    target_names = [t.name for t in plan.targets]
    sets: dict[str, Any] = {}
    for net in pre:
        kind, per_class = _kind(net, original)
        sets[net.target] = {
            "net": net.name, "kind": kind, "labels": net.num_classes,
            "images_per_class": full_per_class if kind == "original" else per_class,
            "budget": (budgets.budget_total(net.target) or (None,))[0],
            "own": _value(per_net, net.name),
            "readout": _value(per_net, net.name) if kind == "original" else _value(per_net, f"readout-{net.target}"),
            "targets": {t: _value(per_net, f"ft-{t}-{net.name}") for t in target_names}}
    orig = sets.get(original)
    table1, table2, change486 = {}, {}, {}
    # Table 1's coarse row: the plan's top-down set (the paper's 127), else its finest coarser label set
    coarse = next((ds for ds in sets if ds.startswith("topdown-")), None) or max(
        (ds for ds, s in sets.items() if s["kind"] == "labelset"), key=lambda ds: sets[ds]["labels"], default=None)
    for t in target_names:
        o = orig["targets"][t] if orig else None
        table1[t] = {"original": o, "coarse": sets[coarse]["targets"][t] if coarse else None,
                     "coarse_set": coarse, "random": _value(per_net, f"scratch-{t}")}
        rows: dict[str, Any] = {}
        for ds, s in sets.items():
            if s["kind"] == "classes" and s["budget"]:
                rows.setdefault(str(s["budget"]), {})["classes"] = s["targets"][t]
                rows[str(s["budget"])]["classes_set"] = ds
        for ds, s in sets.items():   # the same budget as every class x fewer images
            if s["kind"] == "images" and s["images_per_class"]:
                total = str(s["images_per_class"] * s["labels"])
                if total in rows:
                    rows[total]["images"] = s["targets"][t]
                    rows[total]["images_set"] = ds
        table2[t] = rows
        cut = sets.get("bottomup-486")
        change486[t] = cut["targets"][t] - o if cut and cut["targets"][t] is not None and o is not None else None
    return {"original": original, "targets": target_names, "sets": sets, "table1": table1,
            "table2": table2, "change486": change486}


def _p(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _d(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:+.1f}"


def markdown(h: dict[str, Any], figure_files: list[str]) -> list[str]:
    if not h:
        return []
    L = ["", "## Huh et al. 2016: what makes ImageNet good for transfer", "",
         "Accuracies in percent, at each net's last validation test. *own*: the pre-training net on its own labels; *readout*: layers 1-7 frozen, a "
         f"new fc8 on `{h['original']}`; a target column: all layers fine-tuned on that dataset. Published numbers "
         "are SUN-397's at ImageNet scale: beside a smaller plan only the pattern compares.", ""]
    for stem in ("huh_classes", "huh_images"):
        if f"{stem}.png" in figure_files:
            L.append(f"![{stem}]({stem}.png)")
    L += ["", "| pre-training set | kind | labels | images/class | own | readout | "
          + " | ".join(h["targets"]) + " |", "|---|---|---|---|---|---|" + "---|" * len(h["targets"])]
    for ds, s in sorted(h["sets"].items(), key=lambda kv: (KINDS.index(kv[1]["kind"]), -kv[1]["labels"])):
        L.append(f"| {ds} | {s['kind']} | {s['labels']} | {s['images_per_class'] or '—'} | {_p(s['own'])} | "
                 f"{_p(s['readout'])} | " + " | ".join(_p(s["targets"][t]) for t in h["targets"]) + " |")
    pub1 = published.HUH_TABLE1_SUN
    for t in h["targets"]:
        r = h["table1"][t]
        L += ["", f"### Table 1 (target `{t}`)", "", "| pre-trained on | ours | published (SUN) |", "|---|---|---|",
              f"| original ({h['original']}) | {_p(r['original'])} | {_p(pub1['original'])} |",
              f"| coarse ({r['coarse_set'] or 'none in plan'}; paper: top-down 127 classes) | {_p(r['coarse'])} "
              f"| {_p(pub1['coarse'])} |",
              f"| random init | {_p(r['random'])} | {_p(pub1['random'])} |"]
        L += ["", f"### Table 2 (target `{t}`): a fixed image budget", "",
              "| budget | fewer classes (ours) | published | every class, fewer images (ours) | published |",
              "|---|---|---|---|---|"]
        for total, row in sorted(h["table2"][t].items(), key=lambda kv: -int(kv[0])):
            pub = published.HUH_TABLE2_SUN.get(int(total), {})
            L.append(f"| {int(total):,} ({row.get('classes_set', '—')} / {row.get('images_set', '—')}) | "
                     f"{_p(row.get('classes'))} | {_p(pub.get('classes'))} | {_p(row.get('images'))} | "
                     f"{_p(pub.get('images'))} |")
        if not h["table2"][t]:
            L.append("| — (no budgetN-classes set in the plan) | | | | |")
        L += ["", f"486 bottom-up classes minus original on `{t}`: ours {_d(h['change486'][t])} points, "
              f"published {_d(published.HUH_CHANGE_486_SUN)} (SUN)."]
    return L
