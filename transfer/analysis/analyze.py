"""`transfer analyze --plan P`: layer-by-layer CKA between a plan's finished nets and the weight
movement of its fine-tuned nets, written as analysis.json and figures into the report directory
(reports/<plan>/ by default), where `transfer report` picks them up."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import REPO
from ..core import argtypes
from ..core.errors import TransferError
from ..plan.load import load_plan
from . import compute, figures
from .result import AnalysisResult


def default_out(plan_name: str) -> Path:
    """Where `transfer report` writes the plan's report (reports/<plan>/)."""
    return REPO / "reports" / plan_name


def analyze(plan_name: str, out_dir: Path | str | None = None, settings: compute.Settings = compute.Settings(),
            draw: bool = True) -> AnalysisResult:
    """Compute (reusing every cached forward run), then write analysis.json and the figures."""
    plan = load_plan(plan_name)
    out = Path(out_dir) if out_dir else default_out(plan.name)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransferError(f"cannot create output directory {out}: {exc}") from None
    res = compute.run(plan, settings)
    if draw:
        res.figures = figures.draw(res, out)
    res.save(out)
    return res


def _positive(name: str, value: int | None, least: int = 1) -> None:
    if value is not None and value < least:
        raise TransferError(f"{name} must be at least {least}, not {value}")


def _cmd(args: argparse.Namespace) -> int:
    _positive("--images", args.images)
    _positive("--batch", args.batch, 4)
    _positive("--resamples", args.resamples, 100)
    _positive("--gpu", args.gpu, 0)
    _positive("--jobs", args.jobs)
    _positive("--threads", args.threads)
    s = compute.Settings(images=args.images, batch=args.batch, seed=args.seed, resamples=args.resamples,
                         gpu=args.gpu, jobs=args.jobs, threads=args.threads)
    res = analyze(args.plan, args.out, s, draw=not args.no_figures)
    out = Path(args.out) if args.out else default_out(res.plan)
    sec = res.seconds
    print(f"analyze: {len(res.pairs)} pairs, {len(res.movement)} nets' movement, {len(res.missing)} left out; "
          f"{sec['forward_runs_computed']}/{sec['forward_runs']} forward runs computed, {sec['total']:.1f} s "
          f"-> {out / 'analysis.json'}")
    for what, why in res.missing.items():
        print(f"  left out: {what}: {why}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="CKA between the layers of a plan's nets, and how far fine-tuning moved them")
    p.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file")
    p.add_argument("--out", help="report directory (default: reports/<plan>)")
    p.add_argument("--images", type=argtypes.whole(2), default=compute.DEFAULT_IMAGES,
                   help="at most this many validation images per image set (default %(default)s)")
    p.add_argument("--batch", type=argtypes.whole(4), help="images a minibatch of the estimator (default: the plan's test batch)")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="draws the images and seeds the bootstraps")
    p.add_argument("--resamples", type=argtypes.whole(40, why=" (a 95% interval needs a resample in each 2.5% tail)"), default=1000, help="bootstrap resamples of each interval")
    p.add_argument("--gpu", type=argtypes.whole(0), help="run the nets on this GPU (default: the CPU)")
    p.add_argument("--jobs", type=argtypes.whole(1), help="nets run at once (default: one a core on the CPU, 4 on a GPU)")
    p.add_argument("--threads", type=argtypes.whole(1), help="BLAS threads each (default: the cores divided between the jobs)")
    p.add_argument("--no-figures", action="store_true", help="write analysis.json only")
    p.set_defaults(func=_cmd)
