"""In which order the nets of a plan are trained, and how long that takes on K GPUs.

One rule everywhere (local GPU pool, SLURM submission order, this simulator): whenever a GPU
is free, start the ready net with the most remaining critical-path work ("tail work": its own
training time plus the longest chain of nets that copy from it); a net is ready when the net
it copies from is done. Ties go to the longer net, so short nets fill the last gaps (LPT).

`simulate` plays that rule out on K identical GPUs and sets the makespan beside two bounds:
  - lower_bound = max(critical path, total GPU-time / K), valid for any schedule;
  - one_gpu_bound, a proven bound for schedules that give each net one GPU: it adds the
    "waves" argument (nets that cannot start before time h, each at least p long, fill whole
    waves of K GPUs after h), which is what holds the paper's plan 10-50% above
    lower_bound at 32..128 GPUs. Where the simulated makespan equals one_gpu_bound, it is
    optimal among one-GPU-a-net schedules.
A net may use several GPUs (`gpus` on the net, or `net_gpus=`), sped up by `speedup(g)`;
that is how the gap to lower_bound closes for large K (see `--net-gpus`).
"""
from __future__ import annotations

import argparse
import fnmatch
import heapq
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import TransferError

SEC_PER_ITER = 1.7            # CaffeNet on a K20 (FAITHFUL_SPEC.md)
DAY = 86400.0
COMM_OVERHEAD = 0.1           # speedup(g) = g / (1 + 0.1 (g - 1)): data-parallel SGD, synchronous


def speedup(g: int, overhead: float = COMM_OVERHEAD) -> float:
    """How much faster one net trains on g GPUs than on one (Amdahl-like: communication grows with g)."""
    return g / (1.0 + overhead * (g - 1))


@dataclass(frozen=True)
class Job:
    name: str
    base: str | None
    seconds: float            # wall-clock training time on `gpus` GPUs
    gpus: int


def jobs_of(plan: Any, sec_per_iter: float = SEC_PER_ITER,
            net_gpus: Mapping[str, int] | Callable[[Any], int] | None = None,
            nets: list | None = None) -> dict[str, Job]:
    """One Job per net. `net_gpus` maps a net name pattern (fnmatch) to GPUs, or is a function of the net."""
    if sec_per_iter <= 0:
        raise TransferError(f"--sec-per-iter must be positive, not {sec_per_iter}")
    out: dict[str, Job] = {}
    for net in (plan.nets if nets is None else nets):
        g = int(getattr(net, "gpus", 1) or 1)
        if callable(net_gpus):
            g = int(net_gpus(net))
        elif net_gpus:
            for pat, val in net_gpus.items():
                if fnmatch.fnmatchcase(net.name, pat):
                    g = int(val)
        if g < 1:
            raise TransferError(f"net '{net.name}': gpus must be at least 1, not {g}")
        out[net.name] = Job(net.name, net.base, net.max_iter * sec_per_iter / speedup(g), g)
    # A net whose base is outside the selection waits for nothing here (its base is assumed done).
    return {n: (j if j.base in out else Job(j.name, None, j.seconds, j.gpus)) for n, j in out.items()}


def children(jobs: Mapping[str, Job]) -> dict[str, list[str]]:
    kids: dict[str, list[str]] = {n: [] for n in jobs}
    for j in jobs.values():
        if j.base is not None:
            kids[j.base].append(j.name)
    return kids


def tails(jobs: Mapping[str, Job]) -> dict[str, float]:
    """Seconds on the longest chain starting at each job, itself included."""
    kids = children(jobs)
    memo: dict[str, float] = {}

    def tail(n: str) -> float:
        if n not in memo:
            memo[n] = jobs[n].seconds + max((tail(k) for k in kids[n]), default=0.0)
        return memo[n]
    for n in jobs:
        tail(n)
    return memo


def heads(jobs: Mapping[str, Job]) -> dict[str, float]:
    """Earliest start of each job: the time its chain of bases takes."""
    memo: dict[str, float] = {}

    def head(n: str) -> float:
        if n not in memo:
            b = jobs[n].base
            memo[n] = 0.0 if b is None else head(b) + jobs[b].seconds
        return memo[n]
    for n in jobs:
        head(n)
    return memo


def priority(jobs: Mapping[str, Job]) -> list[str]:
    """The project's order: most tail work first, then the longer job, then by name (deterministic)."""
    t = tails(jobs)
    return sorted(jobs, key=lambda n: (-t[n], -jobs[n].seconds, n))


def order(plan: Any, nets: list | None = None) -> list:
    """Nets of a plan in submission order (a base always comes before the nets that copy from it)."""
    jobs = jobs_of(plan, nets=nets)
    by_name = {n.name: n for n in (plan.nets if nets is None else nets)}
    return [by_name[n] for n in priority(jobs)]


def list_schedule(jobs: Mapping[str, Job], gpus: int) -> dict[str, tuple[float, float]]:
    """Start and end of every job under the priority rule on `gpus` identical GPUs."""
    if gpus < 1:
        raise TransferError(f"--gpus must be at least 1, not {gpus}")
    too_wide = [j.name for j in jobs.values() if j.gpus > gpus]
    if too_wide:
        raise TransferError(f"net '{too_wide[0]}' needs {jobs[too_wide[0]].gpus} GPUs; only {gpus} simulated")
    rank = {n: i for i, n in enumerate(priority(jobs))}
    kids = children(jobs)
    ready = [rank[n] for n, j in jobs.items() if j.base is None]
    heapq.heapify(ready)
    names = sorted(rank, key=rank.get)
    running: list[tuple[float, str]] = []
    free, now = gpus, 0.0
    times: dict[str, tuple[float, float]] = {}
    while ready or running:
        # Start, in priority order, every ready job that fits (a wide job does not block narrow ones).
        skipped = []
        while ready and free:
            r = heapq.heappop(ready)
            job = jobs[names[r]]
            if job.gpus <= free:
                free -= job.gpus
                times[job.name] = (now, now + job.seconds)
                heapq.heappush(running, (now + job.seconds, job.name))
            else:
                skipped.append(r)
        for r in skipped:
            heapq.heappush(ready, r)
        now, done = heapq.heappop(running)
        free += jobs[done].gpus
        for k in kids[done]:
            heapq.heappush(ready, rank[k])
        # Every job ending at this same instant frees its GPUs before anything is started.
        while running and running[0][0] == now:
            _, done = heapq.heappop(running)
            free += jobs[done].gpus
            for k in kids[done]:
                heapq.heappush(ready, rank[k])
    return times


def one_gpu_bound(jobs: Mapping[str, Job], gpus: int) -> float:
    """A lower bound on the makespan of every schedule that runs each job on one GPU, non-preemptively.

    Jobs that cannot start before h (their chain of bases takes h), each at least p long: one GPU
    holds at most floor((C - h) / p) of them in [h, C], so C >= h + p * ceil(count / K). Taken with
    the critical path and total work / K, over every h.
    """
    hd, tl = heads(jobs), tails(jobs)
    bound = max(max(tl.values(), default=0.0), sum(j.seconds for j in jobs.values()) / gpus)
    for h in sorted(set(hd.values())):
        late = [j.seconds for n, j in jobs.items() if hd[n] >= h]
        bound = max(bound, h + min(late) * math.ceil(len(late) / gpus))
    return bound


def simulate(plan: Any, gpus: int, sec_per_iter: float = SEC_PER_ITER,
             net_gpus: Mapping[str, int] | Callable[[Any], int] | None = None,
             nets: list | None = None) -> dict[str, Any]:
    """Makespan of the plan on `gpus` GPUs under the project's order, with its lower bounds (seconds)."""
    jobs = jobs_of(plan, sec_per_iter, net_gpus, nets)
    if not jobs:
        raise TransferError(f"plan '{plan.name}': no nets to simulate")
    times = list_schedule(jobs, gpus)
    makespan = max(end for _, end in times.values())
    critical = max(tails(jobs).values())
    work = sum(j.seconds * j.gpus for j in jobs.values())
    lower = max(critical, work / gpus)
    one = jobs_of(plan, sec_per_iter, lambda _n: 1, nets)
    one_bound = one_gpu_bound(one, gpus)
    one_makespan = max(e for _, e in list_schedule(one, gpus).values())
    busy = work / (gpus * makespan)
    return {
        "plan": plan.name, "nets": len(jobs), "gpus": gpus, "sec_per_iter": sec_per_iter,
        "makespan": makespan, "lower_bound": lower, "ratio": makespan / lower,
        "critical_path": critical, "total_work": work,
        "makespan_days": makespan / DAY, "lower_bound_days": lower / DAY,
        "critical_path_days": critical / DAY, "total_work_gpu_days": work / DAY,
        "utilization": busy,
        # Best possible when every net gets one GPU: bound, and whether our schedule meets it.
        "one_gpu_bound": one_bound, "one_gpu_bound_days": one_bound / DAY,
        "one_gpu_makespan": one_makespan, "one_gpu_optimal": math.isclose(one_makespan, one_bound),
        "multi_gpu": any(j.gpus > 1 for j in jobs.values()),
        "start": {n: s for n, (s, _) in sorted(times.items(), key=lambda kv: kv[1])},
    }


# ---------------------------------------------------------------------------- CLI

def parse_net_gpus(items: list[str] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items or []:
        pat, sep, val = item.partition("=")
        if not sep or not val.isdigit() or int(val) < 1:
            raise TransferError(f"--net-gpus {item!r}: expected PATTERN=G with G a positive integer, "
                                f"e.g. 'base-*=2'")
        out[pat] = int(val)
    return out


def _simulate_cmd(args: argparse.Namespace) -> int:
    from .plan import load_plan  # noqa: PLC0415 (plan.py imports this module's register)
    plan = load_plan(args.plan)
    res = simulate(plan, args.gpus, args.sec_per_iter, parse_net_gpus(args.net_gpus),
                   plan.select(args.only) if args.only else None)
    if args.json:
        if not args.starts:
            res.pop("start")
        print(json.dumps(res, indent=1))
        return 0
    d = DAY
    print(f"plan {res['plan']}: {res['nets']} nets on {res['gpus']} GPUs at {res['sec_per_iter']} s/iteration")
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


def register_simulate(plan_subparsers: argparse._SubParsersAction) -> None:
    """Adds `transfer plan simulate` (called from plan.register)."""
    p = plan_subparsers.add_parser("simulate", help="makespan of a plan on K GPUs under the project's order")
    p.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file")
    p.add_argument("--gpus", type=int, required=True, metavar="K", help="number of identical GPUs")
    p.add_argument("--sec-per-iter", type=float, default=SEC_PER_ITER, metavar="S",
                   help=f"seconds per training iteration on one GPU (default {SEC_PER_ITER}, a K20)")
    p.add_argument("--only", help="simulate only nets matching these patterns (bases outside count as done)")
    p.add_argument("--net-gpus", action="append", metavar="PATTERN=G",
                   help="give matching nets G GPUs each (speed-up g/(1+0.1(g-1))); repeatable")
    p.add_argument("--starts", action="store_true", help="also list each net's start time")
    p.add_argument("--json", action="store_true", help="print a JSON object (seconds)")
    p.set_defaults(func=_simulate_cmd)
