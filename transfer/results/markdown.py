"""report.md from the typed report: the verdicts first, then each figure and table with its intervals,
and under every one of them the N replicates behind it, the precision, and (--partial) that it counts
unfinished nets. Huh et al.'s part: huh_markdown.py."""
from __future__ import annotations

from typing import Iterable, Sequence

from . import huh_markdown, published
from .model import Report
from .stats import Estimate
from .yosinski import NS

FAITHFUL_DOC = "docs/FAITHFUL.md"
STATISTICS_DOC = "docs/statistics.md"


def f(v: float | None, digits: int = 4, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:+.2f}%"


def cell(e: Estimate | None, digits: int = 4, signed: bool = False) -> str:
    """`0.6123 [0.5990, 0.6256] (N=3)`: mean, 95% interval, replicates."""
    if e is None:
        return "—"
    ci = f" [{f(e.ci95[0], digits, signed)}, {f(e.ci95[1], digits, signed)}]" if e.ci95 else ""
    return f"{f(e.mean, digits, signed)}{ci} (N={e.n})"


def pct_cell(e: Estimate | None) -> str:
    if e is None:
        return "—"
    return pct(e.mean) + (f" [{pct(e.ci95[0])}, {pct(e.ci95[1])}]" if e.ci95 else "") + f" (N={e.n})"


def n_note(estimates: Iterable[Estimate | None], what: str = "cell") -> str:
    """The line under a figure or table: the N replicates behind its numbers."""
    es = [e for e in estimates if e is not None]
    if not es:
        return "*N replicates: none (no counted net).*"
    ns = sorted({e.n for e in es})
    units = " and ".join(UNIT_WORDS.get(u, "replicates") for u in sorted({e.unit for e in es}))
    nets = sorted({e.count for e in es if e.count})
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]} to {ns[-1]}"
    per = f"; nets per {what}: {nets[0]}" + (f" to {nets[-1]}" if len(nets) > 1 else "") if nets else ""
    one = " N = 1 has no interval." if ns[0] == 1 else ""
    return f"*N = {n} replicates behind each {what} ({units}){per}.{one}*"


UNIT_WORDS = {"split": "a replicate is a random split", "replicate": "seeded replicates"}


# ------------------------------------------------------------------------------ head and verdicts

def _head(r: Report, figure_files: Sequence[str]) -> list[str]:
    k = (f"the mean of its {r.top_k} highest validation accuracies (--top-k" if r.top_k else
         "the mean of its k highest validation accuracies (k scaled to its number of tests: 1 per 20, "
         "at most the paper's 10")
    c = r.counts
    L = [f"# Results: plan `{r.plan}`", "",
         f"Per-net number: {k}; how it is read off a log: {FAITHFUL_DOC}). {c.with_results} of {c.plan_nets} "
         f"nets counted; {c.missing} not counted ({c.unfinished} unfinished, {c.failed} failed or rejected; "
         "listed at the end). Only finished (DONE) nets count"
         + (", and with --partial those still training or stopped, with the tests they reached." if r.partial
            else ".")]
    L += ["", f"Cells: mean [95% interval] (N=replicates). Intervals: {r.intervals} ({STATISTICS_DOC})."]
    if r.includes_unfinished:
        L += ["", PARTIAL]
    L += ["", _precision(r), "", "## Figures", ""]
    for stem in ("figure2", "figure3", "figureS1", "huh_classes", "huh_images", "curves"):
        if f"{stem}.png" in figure_files:
            L.append(f"- [{stem}]({stem}.png) ([pdf]({stem}.pdf))")
    L += [f"- [{name}]({name})" for name in figure_files if name.endswith(".png")
          and name.rsplit(".", 1)[0] not in ("figure2", "figure3", "figureS1", "huh_classes", "huh_images", "curves")]
    return L + (["", "![figure2](figure2.png)"] if "figure2.png" in figure_files else [])


PARTIAL = ("**Includes unfinished nets (--partial)**: nets still training or stopped are counted with the tests "
           "they reached.")


def verdicts(r: Report) -> list[str]:
    if not r.verdicts:
        return []
    L = ["", "## Does the paper's pattern show?", "",
         "\"yes\": the 95% interval of the difference excludes zero in the paper's direction; \"no\": it "
         "excludes zero the other way; otherwise not resolved at this size.", ""]
    L += [f"- {v.line()}" for v in r.verdicts]
    return L


# ------------------------------------------------------------------------------ Yosinski et al.

def _figure2(r: Report, shown: set[str]) -> list[str]:
    rs = r.random_split
    if rs is None:
        return []
    pub = r.published["random_split.baseB.mean"]
    L = ["", "## Figure 2: random A/B splits", "",
         f"baseB: {cell(rs.base_b)}; published {published.BASE_B_TOP1} (difference {f(pub.difference, signed=True)})",
         "", "| n | BnB | BnB+ | AnB | AnB+ |", "|---|---|---|---|---|"]
    series = rs.series()
    for n in NS:
        L.append(f"| {n} | " + " | ".join(cell(s.get(n)) for s in series.values()) + " |")
    L += ["", n_note([rs.base_b, *(e for s in series.values() for e in s.values())])]
    notes = sorted(shown - {"baseB"})
    L += ["", "The figure's numbered interpretations (Section 4.1) drawn: "
          + (", ".join(notes) if notes else "none") + " (each only where its pattern's verdict is yes)."]
    return L


def _table1(r: Report) -> list[str]:
    L = ["", "## Table 1: boost of AnB+ over the controls", "",
         "Paired: each split's AnB+ minus that split's baseB (or BnB+), mean over splits with its 95% interval. "
         "Pooled: every AnB+ net of the range minus every control net, as the paper computed Table 1 "
         "(compared with the published number).", "",
         "| layers | over baseB, paired | pooled | published | pooled − published | over BnB+, paired | pooled "
         "| published | pooled − published | nets AnB+ / baseB / BnB+ |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for rng, row in r.table1.items():
        cells = []
        for col, paired, pooled in (("vs_base", row.vs_base, row.pooled_vs_base),
                                    ("vs_selffer_ft", row.vs_selffer_ft, row.pooled_vs_selffer_ft)):
            p = published.TABLE1[rng][col]
            cells += [pct_cell(paired), pct(pooled), pct(p), pct(None if pooled is None else pooled - p)]
        L.append(f"| {rng} | " + " | ".join(cells)
                 + f" | {row.count_anb_ft} / {row.count_base} / {row.count_bnb_ft} |")
    L += ["", n_note([e for row in r.table1.values() for e in (row.vs_base, row.vs_selffer_ft)], "difference")]
    return L


def _natman(r: Report) -> list[str]:
    nm = r.natman
    if nm is None:
        return []
    L = ["", "## Figure 3: man-made / natural (frozen transfer)", "",
         f"Base man-made: {cell(nm.base['manmade'])}; base natural: {cell(nm.base['natural'])}", "",
         "| n | natural→man-made | man-made→natural | minus man-made base | minus natural base |",
         "|---|---|---|---|---|"]
    for n in NS:
        L.append(f"| {n} | {cell(nm.transfer['manmade'][n])} | {cell(nm.transfer['natural'][n])} | "
                 f"{cell(nm.normalized['manmade'][n], signed=True)} | {cell(nm.normalized['natural'][n], signed=True)} |")
    d = r.drops_n7
    L += ["", n_note([*nm.base.values(), *(e for t in nm.transfer.values() for e in t.values())])]
    if d is not None:
        L += ["", f"Drop at n=7 below the base (positive = worse): random split {pct_cell(d.random_split)} "
              f"(published about 8%), man-made/natural {pct_cell(d.natman)} (published about 25%)."]
    return L


def _random_weights(r: Report) -> list[str]:
    rw = r.random_weights
    if rw is None:
        return []
    p = r.published["random_weights.base.mean"]
    classes = f"{rw.classes}-class" if rw.classes else "every-class"
    L = ["", "## Figure 3: random weights", "",
         f"{classes} base: {cell(rw.base)}; published (1000 classes) top-1 {p.published:.3f} (error 42.5%; "
         f"difference {f(p.difference, signed=True)})", "",
         f"| n | random, layers 1..n frozen | minus the {classes} base |", "|---|---|---|"]
    for n in NS:
        L.append(f"| {n} | {cell(rw.by_n[n])} | {cell(rw.normalized[n], signed=True)} |")
    return L + ["", n_note([rw.base, *rw.by_n.values()])]


def _reduced(r: Report) -> list[str]:
    L = ["", "## Table S1: reduced training data", "",
         "| images per class | ours | published | difference |", "|---|---|---|---|"]
    for c in sorted({int(k) for k in r.reduced} | set(published.TABLE_S1), reverse=True):
        ours = r.reduced.get(f"{c:04d}")
        pv = published.TABLE_S1.get(c)
        diff = ours.mean - pv if ours and pv is not None else None
        L.append(f"| {c} | {cell(ours, 5)} | {f(pv, 5)} | {f(diff, 5, True)} |")
    return L + ["", n_note(r.reduced.values())]


def yosinski(r: Report, shown: set[str]) -> list[str]:
    fams = set(r.families)
    L = _figure2(r, shown) + (_table1(r) if "random_split" in fams else [])
    absent = [x for x in ("natman", "whole", "random_weights", "reduced") if x not in fams]
    if absent:
        L += ["", f"Not in plan `{r.plan}` (sections left out): {', '.join(absent)}."]
    if r.plan != "paper":
        L += ["", "The published numbers are ImageNet-scale; beside a smaller plan only the pattern "
              "(signs, shapes) is comparable, not the levels."]
    L += _natman(r) + _random_weights(r)
    return L + (_reduced(r) if "reduced" in fams else [])


# ------------------------------------------------------------------------------ tail

def _convergence(r: Report) -> list[str]:
    still = r.still_improving
    L = ["", f"## Still improving at their last tests ({len(still)})", "",
         "A net is still improving when the mean of its last fifth of validation tests exceeds the fifth "
         f"before by more than 2 standard errors of test-to-test noise ({STATISTICS_DOC}). A base net still "
         "climbing favours every net trained on top of it (BnB > baseB can be an artefact).", ""]
    if not still:
        return L + ["None."]
    for name in still:
        c = r.nets[name].convergence
        if c is not None and c.change is not None:
            L.append(f"- `{name}`: last {c.window} tests {c.last:.4f} vs the {c.window} before {c.before:.4f} "
                     f"({c.change:+.4f}; noise {c.noise:.4f} a test)")
    return L


def _not_counted(r: Report) -> list[str]:
    missing = r.missing
    L = ["", f"## Not counted ({len(missing)})", ""]
    if not missing:
        return L + ["None."]
    for name in missing:
        e = r.nets[name]
        L.append(f"- `{name}` ({e.released_name or '-'}): {e.state}; {e.reason}")
    return L


def _per_net(r: Report) -> list[str]:
    L = ["", "## Per net", "", "| net | released | state | metric | k | final | best | last iteration | tests "
         "| attempts | still improving | precision |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in r.nets.items():
        m = e.metric
        prec = ", ".join(r.precision.per_net.get(name, ())) or r.precision.label
        imp = {True: "**yes**", False: "no", None: "—"}[e.still_improving]
        L.append(f"| {name} | {e.released_name or '-'} | {e.state}{'' if e.counted else ' (not counted)'} | "
                 f"{f(m.metric if m else None)} | {m.k if m else '—'} | {f(m.final if m else None)} | "
                 f"{f(m.best if m else None)} | {m.iterations if m else '—'} | {m.tests if m else '—'} | "
                 f"{e.attempts} | {imp} | {prec} |")
    return L


def _precision(r: Report) -> str:
    det = ", cuDNN deterministic" if r.precision.deterministic else ""
    return f"*Precision: {r.precision.label}{det}.*"


def _under_headings(lines: list[str], r: Report) -> list[str]:
    """Every figure's and table's section says the precision its numbers were computed with and, with
    --partial, that it counts unfinished nets."""
    out: list[str] = []
    for line in lines:
        out.append(line)
        if line.startswith(("## Figure ", "## Table", "### Figure ", "### Table")):
            out += ["", _precision(r)] + (["", PARTIAL] if r.includes_unfinished else [])
    return out


def markdown(r: Report, shown: set[str], figure_files: Sequence[str], sections: Sequence[str] = ()) -> str:
    """The whole report.md; `sections`: the optional analyses' lines (report.py)."""
    L = _head(r, figure_files) + verdicts(r)
    if r.yosinski:
        L += yosinski(r, shown)
    if r.huh2016:
        L += huh_markdown.markdown(r.huh2016, figure_files)
    L += list(sections) + _convergence(r) + _not_counted(r)
    if r.warnings:
        L += ["", "## Warnings", ""] + [f"- {w}" for w in r.warnings]
    return "\n".join(_under_headings(L + _per_net(r), r)) + "\n"
