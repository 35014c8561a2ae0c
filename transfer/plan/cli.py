"""`transfer plan show` and `transfer plan simulate`: the commands over a plan and its schedule."""
from __future__ import annotations

import argparse
import json

from ..core import argtypes
from ..core.files import shown
from .load import load_plan
from ..core.errors import TransferError
from .schedule import DAY, SEC_PER_ITER, parse_net_gpus, simulate
from .placement import add_placement_options, few
from .speed import load_figures


def _show(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    if args.datasets:
        print(f"plan {plan.name}: {len(plan.datasets)} data sets ({shown(plan.path)})")
        for spec in plan.datasets.values():
            print(f"  {spec.describe()}")
        return 0
    nets = plan.select(args.only)
    if args.json:
        print(json.dumps([n.to_json() for n in nets], indent=1))
        return 0
    reps = f", {plan.replicates} replicates of each" if plan.replicates > 1 else ""
    print(f"plan {plan.name}: {len(nets)} nets{reps} ({shown(plan.path)})")
    print(f"{'name':28} {'treatment':15} {'n':>2} {'base':18} {'max_iter':>8}  released")
    for n in nets:
        print(f"{n.name:28} {n.treatment:15} {n.n or '':>2} {n.base or '-':18} {n.max_iter:>8}  "
              f"{n.released_name or '-'}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    # Packing and multi-GPU choices need a GPU's speed figures; so does a --figures file. Then the
    # figures' time per iteration is the speed too (unless --sec-per-iter says otherwise).
    uses_figures = args.figures or args.nets_per_gpu != 1 or args.multi_gpu == "auto"
    figures = load_figures(args.figures) if uses_figures else None
    spi = args.sec_per_iter or (figures.alone_sec_per_iter if figures else SEC_PER_ITER)
    if args.gpus < 1:
        raise TransferError(f"--gpus must be at least 1, not {args.gpus}")
    res = simulate(plan.name, plan.select(args.only), args.gpus, spi, parse_net_gpus(args.net_gpus),
                   figures=figures, nets_per_gpu=args.nets_per_gpu, multi_gpu=args.multi_gpu == "auto",
                   batch=plan.model.train_batch)
    if args.json:
        if not args.starts:
            res.pop("start")
        print(json.dumps(res, indent=1))
        return 0
    d = DAY
    print(f"plan {res['plan']}: {res['nets']} nets on {res['gpus']} GPUs at {res['sec_per_iter']:g} s/iteration")
    if figures is not None and not args.figures and not args.sec_per_iter:
        print(f"  (the speed is the figures' GPU's, {figures.gpu}: --nets-per-gpu and --multi-gpu need a GPU's "
              f"speed figures; without them the default is a K20's {SEC_PER_ITER:g} s; --sec-per-iter S sets it)")
    if figures is not None:
        tp = ", ".join(f"{k} at once {v:g}x" for k, v in figures.throughput.items() if k > 1) or "none"
        eff = ", ".join(f"{g} GPUs {e:g}" for g, e in figures.efficiency.items()) or "none"
        print(f"  speed figures   {figures.gpu} ({shown(figures.path)}): one net alone "
              f"{figures.alone_sec_per_iter * 1000:g} ms/iteration; throughput {tp}; multi-GPU efficiency {eff}"
              + ("" if figures.multi_gpu_measured else " (an assumption, not measured)"))
        wide = res["multi_gpu_nets"]
        print(f"  chosen          {res['nets_per_gpu']} net(s) a GPU; "
              + (f"{len(wide)} net(s) on several GPUs: {few(wide)}" if wide else "every net on one GPU"))
    print(f"  makespan        {res['makespan'] / d:9.2f} days   (GPUs busy {res['utilization']:.0%})")
    print(f"  lower bound     {res['lower_bound'] / d:9.2f} days   = max(critical path "
          f"{res['critical_path'] / d:.2f}, total work {res['total_work'] / d:.1f} GPU-days / {res['gpus']})")
    print(f"  ratio           {res['ratio']:9.3f}")
    if res["one_gpu_optimal"]:
        tag = "best possible with one GPU a net: our order meets the bound"
    else:
        tag = f"proven bound with one GPU a net; our order gives {res['one_gpu_makespan'] / d:.2f}"
    print(f"  one GPU a net  >={res['one_gpu_bound'] / d:9.2f} days   ({tag})")
    if args.starts:
        for name, start in res["start"].items():
            print(f"  {start / d:8.2f}  {name}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="show or simulate an experiment plan")
    psub = p.add_subparsers(dest="plan_command", metavar="ACTION")
    psub.required = True
    show = psub.add_parser("show", help="list the nets of a plan")
    show.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file")
    show.add_argument("--only", help="comma-separated name patterns, e.g. 'half0*,base-*'")
    show.add_argument("--json", action="store_true", help="print a JSON list of nets")
    show.add_argument("--datasets", action="store_true", help="list the plan's data sets: kind, what each holds")
    show.set_defaults(func=_show)

    sim = psub.add_parser("simulate", help="makespan of a plan on K GPUs under the project's order")
    sim.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file")
    sim.add_argument("--gpus", type=int, required=True, metavar="K", help="number of identical GPUs")
    sim.add_argument("--sec-per-iter", type=argtypes.positive, metavar="S",
                     help=f"seconds per training iteration on one GPU (default {SEC_PER_ITER}, a K20; with "
                          "speed figures in use, theirs)")
    sim.add_argument("--only", help="simulate only nets matching these patterns (bases outside count as done)")
    add_placement_options(sim, "K nets share each GPU, slowed down as the speed figures say")
    sim.add_argument("--starts", action="store_true", help="also list each net's start time")
    sim.add_argument("--json", action="store_true", help="print a JSON object (seconds)")
    sim.set_defaults(func=_simulate)
