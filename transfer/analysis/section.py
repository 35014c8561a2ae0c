"""The report's section "Inside the nets": markdown lines from an AnalysisResult alone (self-contained:
the report includes it where its directory holds analysis.json)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..core.errors import TransferError
from .result import FILE, AnalysisResult, Group, Stat, load
from .summary import move_rows
from .verdicts import verdicts


def cell(s: Stat | None, digits: int = 2) -> str:
    """'0.83 [0.80, 0.86]' (interval over nets or images), '0.83' without one, '—' without a value."""
    if s is None or s.mean is None:
        return "—"
    v = f"{s.mean:.{digits}f}"
    return v + (f" [{s.lo:.{digits}f}, {s.hi:.{digits}f}]" if s.lo is not None else "")


def _layers_table(res: AnalysisResult, rows: list[tuple[str, dict[str, Stat]]]) -> list[str]:
    L = ["| | N | " + " | ".join(res.layers) + " |", "|---|---|" + "---|" * len(res.layers)]
    for label, stats in rows:
        count = max((s.count for s in stats.values()), default=0)
        L.append(f"| {label} | {count} | " + " | ".join(cell(stats[l]) for l in res.layers) + " |")
    return L


def _intro(res: AnalysisResult, figure_files: list[str]) -> list[str]:
    s = res.settings
    sets = ", ".join(f"`{v['name']}` ({v['count']} images)" for v in res.image_sets.values())
    L = ["## Inside the nets: layer-by-layer similarity and weight movement", "",
         "Linear CKA (Kornblith et al. 2019) between the same layer of two nets on the same images, with the "
         "unbiased minibatch estimator (HSIC_1 of Song et al. 2012 averaged over minibatches, as Nguyen, Raghu "
         "and Kornblith 2021): 1 means the same representation up to rotation and scale. "
         f"Images: the validation set of the reference net, drawn at random (seed {s['seed']}), in batches of "
         f"{s['batch']}: {sets}; each net subtracts its own mean and takes the centre crop, as its test net. "
         "Compared: each layer's output after its ReLU (conv1..fc7), the logits at fc8. "
         "Intervals (95%): bootstrap over nets where a row pools several (N > 1); where N = 1, over the image "
         "batches of that one pair, which says how much the images drawn matter, not how another training "
         "run would differ. Movement: ||W_final - W_init|| / ||W_init|| of each layer's weights "
         f"(Neyshabur et al. 2020). From `analysis.json` ({res.generated}, `transfer analyze`).", ""]
    for stem in [f[:-4] for f in figure_files if f.endswith(".png")]:
        L.append(f"![{stem}]({stem}.png)")
    return L + [""]


def _references(res: AnalysisResult) -> list[str]:
    rows = [(f"{g.name}: {r.label}" if g.kind == "replicate" else g.name, r.layers)
            for g in res.groups if g.kind in ("base-base", "init-init", "init-final", "replicate") for r in g.rows]
    if not rows:
        return []
    L = ["### Whole nets compared: generality measured directly, and the references", ""]
    L += _layers_table(res, rows)
    if not any(g.kind == "replicate" for g in res.groups):
        L += ["", "No two nets of this plan are made the same way (one net per treatment and split), so the "
              "noise floor between training runs is not measured here."]
    return L + [""]


def _cut_table(res: AnalysisResult, family: str) -> list[str]:
    groups = [g for g in res.groups if g.family == family and g.kind == "vs-target"]
    if not groups:
        return []
    L = [f"### CKA with baseB at the cut ({family}): layer n (copied) / layer n+1 (trained anew)", "",
         "| n | " + " | ".join(f"{g.name.split(' vs ')[0]} @n | @n+1" for g in groups) + " |",
         "|---|" + "---|---|" * len(groups)]
    for n in range(1, 8):
        cells = []
        for g in groups:
            row = next((r for r in g.rows if r.n == n), None)
            at = [row.layers[res.layers[i]] if row and i < len(res.layers) else None for i in (n - 1, n)]
            cells += [cell(at[0]), cell(at[1])]
        if any(c != "—" for c in cells):
            L.append(f"| {n} | " + " | ".join(cells) + " |")
    return L + [""]


def _group_table(res: AnalysisResult, g: Group) -> list[str]:
    return [f"### {g.name}", ""] + _layers_table(res, [(r.label, r.layers) for r in g.rows]) + [""]


def _movement(res: AnalysisResult) -> list[str]:
    panels = {name: rows for name, rows in
              move_rows(res.movement, res.layers, res.settings["resamples"], res.settings["seed"]).items()
              if any(r.frozen < r.copied for r in rows)}   # frozen nets: in the check, not in tables
    if not panels:
        return []
    L = ["### Weight movement of fine-tuned nets from their start (copied layers in bold)", ""]
    for name, rows in panels.items():
        L += [f"**{name}**", "", "| n | N | " + " | ".join(res.layers) + " |", "|---|---|" + "---|" * len(res.layers)]
        for r in rows:
            cells = [(f"**{cell(r.layers[l], 3)}**" if i < r.copied else cell(r.layers[l], 3))
                     for i, l in enumerate(res.layers)]
            L.append(f"| {r.n} | {len(r.nets)} | " + " | ".join(cells) + " |")
        L.append("")
    return L


def _missing(res: AnalysisResult) -> list[str]:
    if not res.missing:
        return []
    return [f"Left out ({len(res.missing)}): " + "; ".join(f"{k}: {v}" for k, v in list(res.missing.items())[:20])
            + (" ..." if len(res.missing) > 20 else ""), ""]


def section(res: AnalysisResult, figure_files: list[str]) -> list[str]:
    """The section's markdown lines; `figure_files` are the analysis figures present in the report
    directory (each is shown)."""
    L = _intro(res, figure_files) + _references(res)
    for family in dict.fromkeys(g.family for g in res.groups):
        L += _cut_table(res, family)
    for g in res.groups:
        if g.kind in ("vs-source", "huh-base-all"):
            L += _group_table(res, g)
    L += _movement(res)
    L += ["### What these numbers show, and what they do not", ""] + [f"- {v}" for v in verdicts(res)] + [""]
    return L + _missing(res)



def report_section(plan_name: str) -> Callable[[Path], tuple[list[str], list[str]]]:
    """The report's section for `transfer analyze`'s output, when the report directory holds
    analysis.json (of this plan: another plan's is refused, naming both)."""
    def inside_nets(out: Path) -> tuple[list[str], list[str]]:
        if not (out / FILE).is_file():
            return [], []
        res = load(out)
        if res.plan != plan_name:
            raise TransferError(f"{out / FILE} is the analysis of plan '{res.plan}', this report is of plan "
                                f"'{plan_name}': run `transfer analyze --plan {plan_name} --out {out}` or remove it")
        figures = [f for f in res.figures if (out / f).is_file()]
        return ["", *section(res, figures)], figures
    return inside_nets
