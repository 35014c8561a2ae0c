"""`transfer report`: read the logs of a plan's nets, compute the papers' numbers with their intervals
and verdicts, write report.json (the typed report's serialisation), report.md and the figures.

Only finished nets count (collect.py); the exit status says when the report is incomplete
(Exit.INCOMPLETE) unless --partial asks for the unfinished nets too.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .. import REPO
from . import compare, curves, figures, huh_figures, huh_tables, sections as sections_, stats, verdicts
from . import yosinski as y
from .collect import LAYOUTS, Collected, collect
from .counted import Numbers
from .markdown import markdown
from .model import Counts, Precision, Report, to_json
from ..analysis.section import report_section
from ..caffe import precision as precision_
from ..core.errors import Exit, TransferError
from ..core.files import atomic_write, repo_path
from ..plan.load import load_plan
from ..plan.model import Plan
from ..plan.rundir import RunDir


def precision_of(plan: Plan, logs_dir: Path, layout: str) -> Precision:
    """How the numbers were computed: the precision every attempt recorded (transfer/caffe/precision.py).
    The authors' released logs come from K20 GPUs, which compute fp32 only."""
    if layout == "released":
        return Precision("fp32 (released logs, K20 GPUs)", None, {})
    s = precision_.summarize({net.name: RunDir(logs_dir / net.name, net.name, net.max_iter).attempts()
                              for net in plan.nets})
    return Precision(s["label"], s["deterministic"], {k: tuple(v) for k, v in s["per_net"].items()})


def _counts(plan: Plan, col: Collected) -> Counts:
    e = col.entries.values()
    failed = sum(x.state in ("failed", "log rejected") for x in e)
    counted = sum(x.counted for x in e)
    return Counts(len(plan.nets), counted, len(plan.nets) - counted,
                  sum(x.state in ("running", "unfinished", "not started", "absent") for x in e), failed)


def build(plan: Plan, col: Collected, *, layout: str = "runs", top_k: int | None = None, partial: bool = False,
          precision: Precision | None = None) -> Report:
    """The whole report from the collected nets (nothing read or written here)."""
    counted = col.counted()
    d = Numbers(plan, {name: m.metric for name, m in counted.items()})
    fams = {n.family for n in plan.nets}
    improving = {name: bool(e.still_improving) for name, e in col.entries.items()}
    fig2 = y.figure2(d) if "random_split" in fams else None
    t1 = y.table1(d) if "random_split" in fams else {}
    nm = y.natman(d) if "natman" in fams else None
    rw = y.random_weights(d) if {"whole", "random_weights"} & fams else None
    drops = y.drops_n7(d, nm) if nm is not None else (
        y.Drops(stats.combine([(1.0, y.base_b_sample(d)), (-1.0, d.sample(y.rs_of("transfer", (7,))))]), None)
        if fig2 else None)
    reduced = y.reduced(d)
    huh = huh_tables.compute(plan, {n: m.final for n, m in counted.items() if math.isfinite(m.final)})
    found = (verdicts.yosinski(d, t1, drops, improving) if fig2 or rw else []) + \
        (verdicts.huh(huh, improving, {n.name: n.base for n in plan.nets},
                      [n.target for n in plan.nets if n.treatment == "scratch"]) if huh else [])
    comparisons = compare.yosinski(fig2, t1, rw, drops, reduced) + compare.huh(huh)
    return Report(
        plan=plan.name, families=tuple(sorted(fams)), layout=layout, top_k=top_k, intervals=stats.METHOD,
        partial=partial, counts=_counts(plan, col), random_split=fig2, table1=t1, natman=nm, random_weights=rw,
        random_split_normalized=y.random_split_normalized(d) if fig2 else {}, drops_n7=drops, reduced=reduced,
        huh2016=huh, verdicts=tuple(found), published={c.key: c for c in comparisons},
        nets=dict(col.entries), warnings=tuple(w for log in col.logs.values() for w in log.warnings),
        precision=precision or Precision("unknown", None, {}))


def make_report(plan_name: str, logs_dir: Path | str | None, out_dir: Path | str, layout: str = "runs", *,
                draw: bool = True, top_k: int | None = None, partial: bool = False,
                sections: tuple[sections_.Section, ...] | None = None) -> Report:
    """Read, compute, write report.json, report.md and (if draw) the figures into out_dir."""
    plan = load_plan(plan_name)
    top_k = top_k or plan.top_k   # the command line's, else the plan's, else scaled to each net's tests
    logs_path = Path(logs_dir) if logs_dir else repo_path(plan.dirs.runs)
    col = collect(plan, logs_path, layout, top_k, partial)
    report = replace(build(plan, col, layout=layout, top_k=top_k, partial=partial,
                           precision=precision_of(plan, logs_path, layout)),
                     logs=str(logs_path), generated=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransferError(f"cannot create output directory {out}: {exc}") from None
    shown = verdicts.captions_shown(report.verdicts)
    files: list[str] = []
    if draw:
        if report.yosinski:
            files += figures.figure2(report, shown, out) + figures.figure3(report, out) + figures.figureS1(report, out)
        if report.huh2016:
            files += huh_figures.figures(report.huh2016, out, plan.name, figures.note(report))
        files += curves.curves(report, curves.series(plan, col), out)
    if sections is None:   # `transfer analyze`'s section where it ran, and any registered one
        sections = (report_section(plan.name), *sections_.registered())
    extra_lines, extra_files = sections_.run(sections, out)
    report = replace(report, figures=tuple(files + extra_files))
    atomic_write(out / "report.json", json.dumps(to_json(report), indent=1, allow_nan=False) + "\n")
    atomic_write(out / "report.md", markdown(report, shown, report.figures, extra_lines))
    return report


def default_out(plan: Plan) -> Path:
    return REPO / "reports" / plan.name


# ------------------------------------------------------------------------------ CLI

def exit_status(report: Report) -> int:
    """FAILED when a log was rejected; INCOMPLETE when a net is not DONE (with --partial: when one failed);
    else OK."""
    if report.rejected:
        return Exit.FAILED
    if not report.complete and (not report.partial or "failed" in report.unfinished.values()):
        return Exit.INCOMPLETE
    return Exit.OK


def _print(report: Report, out: Path) -> None:
    c = report.counts
    print(f"report: {c.with_results}/{c.plan_nets} nets counted, {c.missing} not counted -> {out / 'report.md'}")
    for v in report.verdicts:
        print(f"  {v.line()}")
    if report.still_improving:
        print(f"  still improving at their last tests: {len(report.still_improving)} nets "
              f"({', '.join(report.still_improving[:5])}{', ...' if len(report.still_improving) > 5 else ''})")
    for name, why in report.rejected.items():
        print(f"transfer report: {name}: log rejected: {why}", file=sys.stderr)
    if report.rejected:
        print(f"transfer report: {len(report.rejected)} nets' logs rejected; the report shows them as "
              "not counted", file=sys.stderr)
    unfinished = report.unfinished
    if exit_status(report) == Exit.INCOMPLETE:
        states = sorted(set(unfinished.values()))
        by = ", ".join(f"{sum(s == x for s in unfinished.values())} {x}" for x in states)
        print(f"transfer report: incomplete: {len(unfinished)} of {c.plan_nets} nets not DONE ({by}): "
              f"{', '.join(list(unfinished)[:8])}{', ...' if len(unfinished) > 8 else ''}; the report leaves "
              "them out (--partial counts those still training or stopped)", file=sys.stderr)


def _cmd(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else default_out(load_plan(args.plan))
    report = make_report(args.plan, args.logs, out, args.layout, draw=not args.no_figures,
                         top_k=args.top_k, partial=args.partial)
    _print(report, out)
    return exit_status(report)


def _positive(option: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            v = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes a whole number, not {value!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{option} must be at least 1, not {v}")
        return v
    return parse


def _gone(value: str) -> int:
    raise argparse.ArgumentTypeError(
        f"{value!r}: the report resamples nothing any more: every interval is a Student-t interval over "
        "replicates (docs/statistics.md); leave the option out")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="read training logs; write the papers' figures, tables and verdicts")
    p.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file")
    p.add_argument("--logs", help="logs directory (default: the plan's runs_dir)")
    p.add_argument("--layout", choices=LAYOUTS, default="runs",
                   help="runs: DIR/<net>/logs/*.log, a net counts once DONE; released: DIR/<released name>/*.gz, "
                        "a net counts once its logs reach max_iter")
    p.add_argument("--out", help="output directory (default: reports/<plan>)")
    p.add_argument("--top-k", type=_positive("--top-k"), default=None, metavar="K",
                   help="a net's number is the mean of its K highest validation accuracies (default: K scaled "
                        "to its tests, 1 per 20, at most 10)")
    p.add_argument("--partial", action="store_true",
                   help="also count nets still training or stopped, with the tests they reached (never a failed "
                        "one); every figure and table then says so, and the exit status is 0 unless a net failed")
    p.add_argument("--resamples", "--seed", type=_gone, help=argparse.SUPPRESS)
    p.add_argument("--no-figures", action="store_true", help="write report.json and report.md only")
    p.set_defaults(func=_cmd)
