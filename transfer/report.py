"""`transfer report`: read the logs of a plan's nets, compute the paper's numbers, write
report.json, report.md and the figures, beside the published numbers.

Layouts of the logs directory:
  runs      <DIR>/<net name>/logs/*.log[.gz]  (this project's run directories; the default)
  released  <DIR>/<released name>/*.gz        (the authors' released results folder)
Nets without usable logs are listed as missing, never dropped silently.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import REPO, huh_report, metrics, published
from . import precision as precision_
from .errors import Exit, TransferError
from .files import atomic_write, repo_path
from .logs import LogError, NetLog, log_files, read_logs
from .plan import Net, Plan, load_plan
from .rundir import RunDir

LAYOUTS = ("runs", "released")
# What each number is and where it comes from; the report links it (relative to the repository).
FAITHFUL_DOC = "docs/FAITHFUL.md"


def precision_of(plan: Plan, logs_dir: Path, layout: str) -> dict[str, Any]:
    """How the numbers were computed: the precision every attempt recorded (transfer/precision.py).
    The authors' released logs come from K20 GPUs, which compute fp32 only."""
    if layout == "released":
        return {"label": "fp32 (released logs, K20 GPUs)", "deterministic": None, "per_net": {}}
    return precision_.summarize({net.name: RunDir(logs_dir / net.name, net.name, net.max_iter).attempts()
                                 for net in plan.nets})


def run_logs(net: Net, logs_dir: Path, layout: str) -> tuple[list[Path], str | None]:
    """(log files, reason they are missing) for one net."""
    if layout == "runs":
        where = RunDir(logs_dir / net.name, net.name, net.max_iter).logs_dir
    elif layout == "released":
        if not net.released_name:
            return [], "no released name in the plan"
        where = logs_dir / net.released_name
    else:
        raise TransferError(f"unknown layout '{layout}' for {logs_dir} (known: {', '.join(LAYOUTS)})")
    files = log_files(where)
    return files, None if files else f"no log files in {where}"


def collect(plan: Plan, logs_dir: Path, layout: str) -> tuple[dict[str, NetLog], dict[str, str]]:
    """Logs of every net of the plan that has some, and the reason for each that has none."""
    if layout not in LAYOUTS:
        raise TransferError(f"unknown layout '{layout}' for {logs_dir} (known: {', '.join(LAYOUTS)})")
    if not logs_dir.is_dir():
        raise TransferError(f"logs directory {logs_dir} does not exist (layout '{layout}')")
    logs: dict[str, NetLog] = {}
    missing: dict[str, str] = {}
    for net in plan.nets:
        files, why = run_logs(net, logs_dir, layout)
        if why:
            missing[net.name] = why
            continue
        try:
            logs[net.name] = read_logs(files)
        except LogError as exc:  # a log whose numbers cannot be results: the net is shown without one
            missing[net.name] = f"{REJECTED}{exc}"
    return logs, missing


REJECTED = "log rejected: "


def _metrics(logs: dict[str, NetLog], missing: dict[str, str], k: int) -> dict[str, metrics.NetMetric]:
    """The metric of every net whose logs hold a validation test (the others join `missing`)."""
    per_net: dict[str, metrics.NetMetric] = {}
    for name, log in logs.items():
        m = metrics.net_metric(log, k)
        if m is None:
            missing[name] = "logs hold no validation test"
        else:
            per_net[name] = m
    return per_net


def _net_entry(net: Net, m: metrics.NetMetric | None, logs: dict[str, NetLog]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "released_name": net.released_name, "family": net.family, "treatment": net.treatment,
        "n": net.n, "target": net.target, "classes": net.num_classes, "max_iter": net.max_iter,
        "metric": None, "final": None, "best": None, "iterations": None, "tests": None,
        "attempts": logs[net.name].attempts if net.name in logs else 0, "complete": False}
    if m:
        entry.update(metrics.metric_dict(m))
        entry["complete"] = m.iterations >= net.max_iter
    return entry


def build(plan: Plan, logs: dict[str, NetLog], missing: dict[str, str], *, k: int = metrics.TOP_K,
          resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The whole report as a JSON-able dict."""
    missing = dict(missing)
    per_net = _metrics(logs, missing, k)
    nets = plan.nets
    rs = metrics.random_split(nets, per_net)
    t1 = metrics.table1(nets, per_net, resamples, seed)
    nm = metrics.natman(nets, per_net)
    drops = metrics.drops_n7(rs, nm)
    report: dict[str, Any] = {
        "plan": plan.name,
        "families": sorted({n.family for n in nets}),
        "top_k": k,
        "bootstrap": {"resamples": resamples, "seed": seed, "interval": 0.95},
        "counts": {"plan_nets": len(nets), "with_results": len(per_net), "missing": len(missing)},
        "random_split": rs,
        "table1": t1,
        "natman": nm,
        "random_weights": metrics.random_weights(nets, per_net),
        "reduced": metrics.reduced(nets, per_net),
        "random_split_normalized": metrics.random_split_normalized(rs),
        "drops_n7": drops,
        "qualitative": metrics.qualitative(rs, t1, drops),
        "nets": {net.name: _net_entry(net, per_net.get(net.name), logs) for net in nets},
        "missing": [n.name for n in nets if n.name in missing],
        "missing_reasons": {n.name: missing[n.name] for n in nets if n.name in missing},
        "rejected": {n.name: missing[n.name][len(REJECTED):] for n in nets
                     if missing.get(n.name, "").startswith(REJECTED)},
        "warnings": [w for log in logs.values() for w in log.warnings],
        "huh2016": huh_report.compute(plan, per_net),
    }
    report["published"] = compare_published(report)
    return report


def _lookup(report: dict[str, Any], dotted: str) -> Any:
    cur: Any = report
    for part in dotted.split("."):
        if not isinstance(cur, dict) or cur.get(part) is None:
            return None
        cur = cur[part]
    return cur


def compare_published(report: dict[str, Any]) -> dict[str, Any]:
    """Each published number beside ours, with ours minus published (null where we have none)."""
    out = {}
    for key, (value, source) in published.entries().items():
        ours = _lookup(report, key)
        out[key] = {"published": value, "ours": ours,
                    "difference": None if ours is None else ours - value, "source": source}
    return out


# ------------------------------------------------------------------------------ markdown

def _f(v: Any, digits: int = 4, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _cell(s: dict[str, Any] | None) -> str:
    if not s:
        return "—"
    spread = f" ±{s['std']:.4f}" if s["count"] > 1 else ""
    return f"{s['mean']:.4f}{spread} (n={s['count']})"


def _yosinski(report: dict[str, Any]) -> bool:
    """Whether the plan has any of the first paper's families (else its sections are left out)."""
    return bool(set(report.get("families", [])) - HUH_FAMILIES)


HUH_FAMILIES = {"huh2016", "target"}


def _head_md(report: dict[str, Any], figure_files: list[str]) -> list[str]:
    L = [f"# Results: plan `{report['plan']}`", "",
         f"Per-net number: mean of the {report['top_k']} highest validation accuracies of the run "
         f"(how it is read off a log: {FAITHFUL_DOC}). {report['counts']['with_results']} of "
         f"{report['counts']['plan_nets']} nets have results; {report['counts']['missing']} missing. "
         f"Cells: mean ±std (number of nets).", "", _precision_md(report), ""]
    L += ["## Figures", ""]
    for stem in ("figure2", "figure3", "figureS1", "huh_classes", "huh_images", "curves"):
        if f"{stem}.png" in figure_files:
            L.append(f"- [{stem}]({stem}.png) ([pdf]({stem}.pdf))")
    return L + (["", "![figure2](figure2.png)", ""] if "figure2.png" in figure_files else [])


def _random_split_md(report: dict[str, Any]) -> list[str]:
    pub, rs = report["published"], report["random_split"]
    L = ["## Figure 2: random A/B splits", "",
         f"baseB: {_cell(rs['baseB'])}; published {published.BASE_B_TOP1} "
         f"(difference {_f(pub['random_split.baseB.mean']['difference'], signed=True)})", "",
         "| n | BnB | BnB+ | AnB | AnB+ |", "|---|---|---|---|---|"]
    for n in metrics.NS:
        L.append(f"| {n} | " + " | ".join(_cell(rs[t][str(n)]) for t in ("BnB", "BnB+", "AnB", "AnB+")) + " |")
    return L


def _table1_md(report: dict[str, Any]) -> list[str]:
    pub = report["published"]
    L = ["", "## Table 1: boost of AnB+ over the controls", "",
         "| layers | over baseB (ours) | 95% CI | published | difference | over BnB+ (ours) | 95% CI "
         "| published | difference | nets AnB+ / baseB / BnB+ |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for rng, row in report["table1"].items():
        cells = []
        for col in ("vs_base", "vs_selffer_ft"):
            ci = row.get(col + "_ci95")
            p = pub[f"table1.{rng}.{col}"]
            cells += [_pct(row[col]), f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "—",
                      _pct(p["published"]), _pct(p["difference"])]
        L.append(f"| {rng} | " + " | ".join(cells)
                 + f" | {row['count_anb_ft']} / {row['count_base']} / {row['count_bnb_ft']} |")
    return L


def markdown(report: dict[str, Any], figure_files: list[str]) -> str:
    if not _yosinski(report):   # a Huh et al. plan only
        L = _head_md(report, figure_files) + huh_report.markdown(report["huh2016"] or {}, figure_files)
        return "\n".join(_with_precision(L + _tail_md(report, qualitative=False), report)) + "\n"
    L = _head_md(report, figure_files) + _random_split_md(report) + _table1_md(report)
    fams = set(report.get("families", []))
    absent = [f for f in ("natman", "whole", "random_weights", "reduced") if f not in fams]
    if absent:
        L += ["", f"Not in plan `{report['plan']}` (sections left out): {', '.join(absent)}."]
    if report["plan"] != "paper":
        L += ["", "The published numbers are ImageNet-scale; beside a smaller plan only the pattern "
              "(signs, shapes) is comparable, not the levels."]
    if "natman" in fams:
        L += _natman_md(report)
    if {"whole", "random_weights"} & fams:
        L += _random_md(report)
    if "reduced" in fams:
        L += _reduced_md(report)
    if report.get("huh2016"):
        L += huh_report.markdown(report["huh2016"], figure_files)
    L += _tail_md(report)
    return "\n".join(_with_precision(L, report)) + "\n"


def _natman_md(report: dict[str, Any]) -> list[str]:
    nm = report["natman"]
    L: list[str] = []
    L += ["", "## Figure 3: man-made / natural (frozen transfer)", "",
          f"Base man-made: {_cell(nm['base']['manmade'])}; base natural: {_cell(nm['base']['natural'])}", "",
          "| n | natural→man-made | man-made→natural | normalized to man-made | normalized to natural |",
          "|---|---|---|---|---|"]
    for n in metrics.NS:
        L.append(f"| {n} | {_cell(nm['transfer']['manmade'][str(n)])} | {_cell(nm['transfer']['natural'][str(n)])}"
                 f" | {_cell(nm['normalized']['manmade'][str(n)])} | {_cell(nm['normalized']['natural'][str(n)])} |")
    d = report["drops_n7"]
    L += ["", "Drop at n=7 below the base (positive = worse): "
          f"random split {_pct(d['random_split'])} (published about 8%), "
          f"man-made/natural {_pct(d['natman'])} (published about 25%).", ""]
    return L


def _random_md(report: dict[str, Any]) -> list[str]:
    pub = report["published"]
    L: list[str] = []
    rw = report["random_weights"]
    p = pub["random_weights.base.mean"]
    L += ["## Figure 3: random weights", "",
          f"1000-class base: {_cell(rw['base'])}; published top-1 {p['published']:.3f} "
          f"(error 42.5%; difference {_f(p['difference'], signed=True)})", "",
          "| n | random, layers 1..n frozen | minus 1000-class base |", "|---|---|---|"]
    for n in metrics.NS:
        L.append(f"| {n} | {_cell(rw[str(n)])} | {_cell(rw['normalized'][str(n)])} |")
    return L


def _reduced_md(report: dict[str, Any]) -> list[str]:
    L: list[str] = []
    L += ["", "## Table S1: reduced training data", "",
          "| images per class | ours | published | difference |", "|---|---|---|---|"]
    counts = sorted({int(c) for c in report["reduced"]} | set(published.TABLE_S1), reverse=True)
    for c in counts:
        ours = report["reduced"].get(f"{c:04d}")
        pv = published.TABLE_S1.get(c)
        diff = ours["mean"] - pv if ours and pv is not None else None
        L.append(f"| {c} | {_f(ours['mean'], 5) if ours else '—'} | {_f(pv, 5)} | {_f(diff, 5, True)} |")
    return L


def _tail_md(report: dict[str, Any], qualitative: bool = True) -> list[str]:
    L: list[str] = []
    if qualitative:
        L += ["", "## Does the paper's pattern show?", ""]
    for key, q in report["qualitative"].items() if qualitative else ():
        verdict = {True: "yes", False: "**no**", None: "not enough data"}[q["holds"]]
        L.append(f"- {key.replace('_', ' ')}: {verdict} — {q['detail']}")

    L += ["", f"## Missing nets ({len(report['missing'])})", ""]
    if report["missing"]:
        for name in report["missing"]:
            L.append(f"- `{name}` ({report['nets'][name]['released_name'] or '-'}): "
                     f"{report['missing_reasons'][name]}")
    else:
        L.append("None.")
    incomplete = [n for n, e in report["nets"].items() if e["metric"] is not None and not e["complete"]]
    if incomplete:
        L += ["", f"Nets whose logs stop before max_iter ({len(incomplete)}): "
              + ", ".join(f"`{n}` ({report['nets'][n]['iterations']}/{report['nets'][n]['max_iter']})"
                          for n in incomplete)]
    if report["warnings"]:
        L += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    L += ["", "## Per net", "", "| net | released | metric | final | best | last iteration | tests | attempts "
          "| precision |", "|---|---|---|---|---|---|---|---|---|"]
    per_net = (report.get("precision") or {}).get("per_net", {})
    for name, e in report["nets"].items():
        prec = ", ".join(per_net.get(name, [])) or (report.get("precision") or {}).get("label", "—")
        L.append(f"| {name} | {e['released_name'] or '-'} | {_f(e['metric'])} | {_f(e['final'])} | "
                 f"{_f(e['best'])} | {e['iterations'] if e['iterations'] is not None else '—'} | "
                 f"{e['tests'] if e['tests'] is not None else '—'} | {e['attempts']} | {prec} |")
    return L


def _precision_md(report: dict[str, Any]) -> str:
    p = report.get("precision") or {}
    det = {True: ", cuDNN deterministic", False: "", None: ""}[p.get("deterministic")]
    return f"*Precision: {p.get('label', 'unknown')}{det}.*"


def _with_precision(lines: list[str], report: dict[str, Any]) -> list[str]:
    """Every figure's and table's section says the precision its numbers were computed with."""
    out: list[str] = []
    for line in lines:
        out.append(line)
        if line.startswith(("## Figure", "## Table", "### Figure", "### Table")):
            out += ["", _precision_md(report)]
    return out


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:+.2f}%"


# ------------------------------------------------------------------------------ writing

def _write_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def curve_series(plan: Plan, logs: dict[str, NetLog]) -> dict[str, dict[str, Any]]:
    out = {}
    for net in plan.nets:
        log = logs.get(net.name)
        if log and log.val_accuracy:
            its, acc = log.series("val_accuracy")
            out[net.name] = {"family": net.family, "treatment": net.treatment, "n": net.n,
                             "target": net.target, "iters": its, "acc": acc}
    return out


def make_report(plan_name: str, logs_dir: Path | str | None, out_dir: Path | str, layout: str = "runs",
                *, draw: bool = True, k: int | None = None, resamples: int = 2000,
                seed: int = 0) -> dict[str, Any]:
    """Read, compute, write report.json, report.md and (if draw) the figures into out_dir.
    k: the top-k of the per-net number (default: the plan's `top_k`)."""
    plan = load_plan(plan_name)
    k = plan.top_k if k is None else k
    logs_path = Path(logs_dir) if logs_dir else _default_runs(plan)
    logs, missing = collect(plan, logs_path, layout)
    report = build(plan, logs, missing, k=k, resamples=resamples, seed=seed)
    report["layout"] = layout
    report["precision"] = precision_of(plan, logs_path, layout)
    report["logs"] = str(logs_path)
    report["generated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransferError(f"cannot create output directory {out}: {exc}") from None
    files: list[str] = []
    if draw:
        from . import figures, huh_figures  # noqa: PLC0415 (matplotlib takes a second to load; only drawing needs it)
        if _yosinski(report):
            files += figures.figure2(report, out)
            files += figures.figure3(report, out)
            files += figures.figureS1(report, out)
        if report["huh2016"]:
            files += huh_figures.figures(report["huh2016"], out, plan.name, figures.precision_note(report))
        files += figures.curves(report, curve_series(plan, logs), out)
    report["figures"] = files
    _write_text(out / "report.json", json.dumps(report, indent=1, allow_nan=False, default=_json_default) + "\n")
    _write_text(out / "report.md", markdown(report, files))
    return report


def _json_default(obj: Any) -> Any:
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


def _default_runs(plan: Plan) -> Path:
    return repo_path(plan.dirs.runs)


def default_out(plan: Plan) -> Path:
    return REPO / "reports" / plan.name


# ------------------------------------------------------------------------------ CLI

def _cmd(args: argparse.Namespace) -> int:
    if args.top_k is not None and args.top_k < 1:
        raise TransferError(f"--top-k must be at least 1, not {args.top_k}")
    out = args.out or default_out(load_plan(args.plan))
    report = make_report(args.plan, args.logs, out, args.layout, draw=not args.no_figures,
                         k=args.top_k, resamples=args.resamples, seed=args.seed)
    c = report["counts"]
    print(f"report: {c['with_results']}/{c['plan_nets']} nets with results, {c['missing']} missing "
          f"-> {Path(out) / 'report.md'}")
    for key, q in report["qualitative"].items() if _yosinski(report) else ():
        print(f"  {key}: {({True: 'yes', False: 'no', None: 'not enough data'})[q['holds']]}")
    for name, why in report["rejected"].items():
        print(f"transfer report: {name}: {REJECTED}{why}", file=sys.stderr)
    if report["rejected"]:
        print(f"transfer report: {len(report['rejected'])} nets' logs rejected; the report shows them as "
              "missing", file=sys.stderr)
        return Exit.FAILED
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="read training logs; write the paper's figures and tables")
    p.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file")
    p.add_argument("--logs", help="logs directory (default: the plan's runs_dir)")
    p.add_argument("--layout", choices=LAYOUTS, default="runs",
                   help="runs: DIR/<net>/logs/*.log; released: DIR/<released name>/*.gz")
    p.add_argument("--out", help="output directory (default: reports/<plan>)")
    p.add_argument("--top-k", type=int, default=None,
                   help="a net's number is the mean of its K highest validation accuracies "
                        f"(default: the plan's top_k, {metrics.TOP_K} unless it says)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples for Table 1")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--no-figures", action="store_true", help="write report.json and report.md only")
    p.set_defaults(func=_cmd)
