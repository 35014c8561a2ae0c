"""The main job on the built-in synthetic dataset: every stage of the pipeline, end to end, on CPU.

images -> splits -> LMDBs -> nets -> surgery + training (real caffe) -> inside the nets (CKA, weight
movement) -> report. Each stage reuses what is already done, so a second `make demo` only reports again.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .core import argtypes
from .core.console import stage
from .core.errors import TransferError
from .core.files import duration
from .plan.load import load_plan
from .data.prepare import prepare_plan_data
from .results.report import default_out, make_report
from .train.options import RunOptions
from .train.runner import run_plan
from .analysis.analyze import analyze

log = stage("demo")


def demo(plan_name: str = "small", jobs: int = 2, out: str | None = None) -> Path:
    plan = load_plan(plan_name)
    if plan.synthetic is None:
        raise TransferError(f"plan '{plan.name}' has no synthetic dataset; the demo runs on one (try --plan small)")
    t0 = time.monotonic()
    log.info("plan %s (%d nets) on the synthetic dataset, %d CPU jobs", plan.name, len(plan.nets), jobs)
    log.info("1/4 data: synthetic images, splits, file lists, LMDBs, means, net files")
    prepare_plan_data(plan, jobs=jobs)
    log.info("2/4 training with caffe (%s so far)", duration(time.monotonic() - t0))
    status = run_plan(plan, options=RunOptions.of(plan, cpu=True, jobs=max(1, jobs)))
    if status != 0:
        raise TransferError(f"training did not finish (exit {status}); `transfer status --plan {plan.arg}` "
                            "shows which nets failed; rerun to continue")
    out_dir = Path(out) if out else default_out(plan)
    log.info("3/4 inside the nets: CKA between layers, weight movement (%s so far)", duration(time.monotonic() - t0))
    analyze(plan_name, out_dir)
    log.info("4/4 report (%s so far)", duration(time.monotonic() - t0))
    report = make_report(plan_name, None, out_dir)
    log.info("done in %s", duration(time.monotonic() - t0))
    for v in report.verdicts:
        print(f"   paper's pattern, {v.line()}")
    for name in [f for f in report.figures if f.endswith(".png") and f != "curves.png"] + ["report.md"]:
        print(f"   {name:16} {out_dir / name}")
    return out_dir


def _cmd(args: argparse.Namespace) -> int:
    demo(args.plan, args.jobs, args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on the synthetic dataset (CPU)")
    p.add_argument("--plan", default="small", help="a plan with a synthetic dataset (small, tiny, huh-small)")
    p.add_argument("--jobs", type=argtypes.whole(1), default=os.cpu_count() or 1, help="nets trained at once")
    p.add_argument("--out", help="report directory (default: reports/<plan>)")
    p.set_defaults(func=_cmd)
