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
A net may use several GPUs (`net_gpus=`), sped up by `speedup(g)`; that is how the gap to
lower_bound closes for large K (see `--net-gpus`).

This module knows nets only as things with a name, a base and a number of iterations (`Trainable`),
so the plan can use it without it knowing the plan.
"""
from __future__ import annotations

import fnmatch
import heapq
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar

from .errors import TransferError

SEC_PER_ITER = 1.7            # CaffeNet on a K20 (docs/FAITHFUL.md)
DAY = 86400.0
COMM_OVERHEAD = 0.1           # speedup(g) = g / (1 + 0.1 (g - 1)): data-parallel SGD, synchronous


def speedup(g: int, overhead: float = COMM_OVERHEAD) -> float:
    """How much faster one net trains on g GPUs than on one (Amdahl-like: communication grows with g)."""
    return g / (1.0 + overhead * (g - 1))


class Trainable(Protocol):
    """What scheduling needs to know of a net."""

    @property
    def name(self) -> str: ...
    @property
    def base(self) -> str | None: ...
    @property
    def max_iter(self) -> int: ...


T = TypeVar("T", bound=Trainable)
NetGpus = Mapping[str, int] | Callable[[Any], int] | None


@dataclass(frozen=True)
class Job:
    name: str
    base: str | None
    seconds: float            # wall-clock training time on `gpus` GPUs
    gpus: int


def jobs_of(nets: Sequence[Trainable], sec_per_iter: float = SEC_PER_ITER,
            net_gpus: NetGpus = None) -> dict[str, Job]:
    """One Job per net. `net_gpus` maps a net name pattern (fnmatch) to GPUs, or is a function of the net."""
    if sec_per_iter <= 0:
        raise TransferError(f"--sec-per-iter must be positive, not {sec_per_iter}")
    out: dict[str, Job] = {}
    for net in nets:
        g = 1
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


def order(nets: Sequence[T]) -> list[T]:
    """Nets in submission order (a base always comes before the nets that copy from it)."""
    by_name = {n.name: n for n in nets}
    return [by_name[n] for n in priority(jobs_of(nets))]


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


def simulate(name: str, nets: Sequence[Trainable], gpus: int, sec_per_iter: float = SEC_PER_ITER,
             net_gpus: NetGpus = None) -> dict[str, Any]:
    """Makespan of plan `name`'s `nets` on `gpus` GPUs under the project's order, with its lower
    bounds (seconds)."""
    jobs = jobs_of(nets, sec_per_iter, net_gpus)
    if not jobs:
        raise TransferError(f"plan '{name}': no nets to simulate")
    times = list_schedule(jobs, gpus)
    makespan = max(end for _, end in times.values())
    critical = max(tails(jobs).values())
    work = sum(j.seconds * j.gpus for j in jobs.values())
    lower = max(critical, work / gpus)
    one = jobs_of(nets, sec_per_iter, lambda _n: 1)
    one_bound = one_gpu_bound(one, gpus)
    one_makespan = max(e for _, e in list_schedule(one, gpus).values())
    busy = work / (gpus * makespan)
    return {
        "plan": name, "nets": len(jobs), "gpus": gpus, "sec_per_iter": sec_per_iter,
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


def parse_net_gpus(items: list[str] | None) -> dict[str, int]:
    """`--net-gpus PATTERN=G` options as a mapping."""
    out: dict[str, int] = {}
    for item in items or []:
        pat, sep, val = item.partition("=")
        if not sep or not val.isdigit() or int(val) < 1:
            raise TransferError(f"--net-gpus {item!r}: expected PATTERN=G with G a positive integer, "
                                f"e.g. 'base-*=2'")
        out[pat] = int(val)
    return out
