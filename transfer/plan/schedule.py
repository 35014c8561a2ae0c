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

With GPU speed figures (transfer/plan/speed.py) the simulator also models K nets sharing one GPU
(`pack_schedule`: while j nets share a GPU each runs at throughput(j) / j of its speed alone) and
one net on G GPUs (speed-up G x efficiency), and can choose both: the K with the shortest makespan
(`nets_per_gpu="auto"`), and more GPUs for the nets on the critical path while that shortens it
(`multi_gpu=True`).

This module knows nets only as things with a name, a base and a number of iterations (`Trainable`),
so the plan can use it without it knowing the plan.
"""
from __future__ import annotations

import fnmatch
import heapq
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar

from ..core.errors import TransferError

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


def width_of(net_gpus: NetGpus) -> Callable[[Any], int]:
    """GPUs a net gets: `net_gpus` maps name patterns (fnmatch; the last match wins) to GPUs, or is
    a function of the net; 1 for every net by default."""
    if callable(net_gpus):
        return lambda net: int(net_gpus(net))
    pats = dict(net_gpus or {})

    def width(net: Any) -> int:
        g = 1
        for pat, val in pats.items():
            if fnmatch.fnmatchcase(net.name, pat):
                g = int(val)
        return g
    return width


@dataclass(frozen=True)
class Job:
    name: str
    base: str | None
    seconds: float            # wall-clock training time on `gpus` GPUs
    gpus: int


def jobs_of(nets: Sequence[Trainable], sec_per_iter: float = SEC_PER_ITER,
            net_gpus: NetGpus = None, gain: Callable[[int], float] = speedup) -> dict[str, Job]:
    """One Job per net. `net_gpus` maps a net name pattern (fnmatch) to GPUs, or is a function of the
    net; `gain(g)` is how much faster a net trains on g GPUs."""
    if sec_per_iter <= 0:
        raise TransferError(f"--sec-per-iter must be positive, not {sec_per_iter}")
    width = width_of(net_gpus)
    out: dict[str, Job] = {}
    for net in nets:
        g = width(net)
        if g < 1:
            raise TransferError(f"net '{net.name}': gpus must be at least 1, not {g}")
        out[net.name] = Job(net.name, net.base, net.max_iter * sec_per_iter / gain(g), g)
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


def _check_pack(jobs: Mapping[str, Job], gpus: int, per_gpu: int, throughput: Mapping[int, float]) -> None:
    if gpus < 1:
        raise TransferError(f"--gpus must be at least 1, not {gpus}")
    if per_gpu < 1 or any(k not in throughput for k in range(1, per_gpu + 1)):
        raise TransferError(f"--nets-per-gpu {per_gpu}: the speed figures give no throughput for "
                            f"{per_gpu} nets at once (they have {', '.join(map(str, sorted(throughput)))})")
    too_wide = [j.name for j in jobs.values() if j.gpus > gpus]
    if too_wide:
        raise TransferError(f"net '{too_wide[0]}' needs {jobs[too_wide[0]].gpus} GPUs; only {gpus} simulated")


def _spot(width: int, load: list[int], per_gpu: int) -> list[int] | None:
    """The GPUs a job of `width` GPUs starts on now (the least loaded one; a wide job: idle ones), or None."""
    if width == 1:
        g = min(range(len(load)), key=lambda i: load[i])
        return [g] if load[g] < per_gpu else None
    idle = [i for i in range(len(load)) if load[i] == 0]
    return idle[:width] if len(idle) >= width else None


def pack_schedule(jobs: Mapping[str, Job], gpus: int, per_gpu: int,
                  throughput: Mapping[int, float]) -> dict[str, tuple[float, float]]:
    """Start and end of every job under the priority rule on `gpus` GPUs holding up to `per_gpu`
    one-GPU jobs each. While j jobs share a GPU, each progresses at throughput[j] / j of its speed
    alone (re-evaluated whenever one starts or ends); a job on several GPUs has them to itself.
    A ready one-GPU job goes to the least loaded GPU (nets spread before they share)."""
    _check_pack(jobs, gpus, per_gpu, throughput)
    rank = {n: i for i, n in enumerate(priority(jobs))}
    names = sorted(rank, key=rank.get)
    kids = children(jobs)
    ready = [rank[n] for n, j in jobs.items() if j.base is None]
    heapq.heapify(ready)
    load = [0] * gpus                      # one-GPU jobs on each GPU; per_gpu + 1 marks a wide job's GPU
    left: dict[str, float] = {}            # running job -> seconds of work left (at its speed alone)
    where: dict[str, list[int]] = {}
    starts: dict[str, float] = {}
    times: dict[str, tuple[float, float]] = {}
    now = 0.0
    while ready or left:
        skipped = []
        while ready:
            r = heapq.heappop(ready)
            job = jobs[names[r]]
            spot = _spot(job.gpus, load, per_gpu)
            if spot is None:
                skipped.append(r)
                continue
            for i in spot:
                load[i] += 1 if job.gpus == 1 else per_gpu + 1
            left[job.name], where[job.name], starts[job.name] = job.seconds, spot, now
        for r in skipped:
            heapq.heappush(ready, r)

        def rate(n: str) -> float:
            if jobs[n].gpus > 1:
                return 1.0
            j = load[where[n][0]]
            return throughput[j] / j
        rates = {n: rate(n) for n in left}
        step = min(left[n] / rates[n] for n in left)
        now += step
        for n in list(left):
            left[n] -= step * rates[n]
            if left[n] <= 1e-9 * jobs[n].seconds:
                del left[n]
                times[n] = (starts[n], now)
                for i in where.pop(n):
                    load[i] -= 1 if jobs[n].gpus == 1 else per_gpu + 1
                for k in kids[n]:
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


def makespan_of(jobs: Mapping[str, Job], gpus: int, per_gpu: int = 1,
                throughput: Mapping[int, float] | None = None) -> tuple[float, dict[str, tuple[float, float]]]:
    """The makespan and the (start, end) of every job: one net a GPU, or `per_gpu` sharing one."""
    if per_gpu == 1:
        times = list_schedule(jobs, gpus)
    else:
        times = pack_schedule(jobs, gpus, per_gpu, throughput or {1: 1.0})
    return max(end for _, end in times.values()), times


def _on_critical_path(jobs: Mapping[str, Job]) -> list[str]:
    hd, tl = heads(jobs), tails(jobs)
    top = max(tl.values())
    return [n for n in jobs if math.isclose(hd[n] + tl[n], top, rel_tol=1e-9)]


def widen_critical(nets: Sequence[Trainable], gpus: int, sec_per_iter: float, widths: dict[str, int],
                   per_gpu: int, throughput: Mapping[int, float], gain: Callable[[int], float],
                   choices: Sequence[int]) -> dict[str, int]:
    """Give the nets on the critical path more GPUs (each of `choices`) as long as the makespan
    shrinks; all of them at once, since equal chains (the paper's bases) shorten only together."""
    widths = dict(widths)

    def span(w: dict[str, int]) -> float:
        return makespan_of(jobs_of(nets, sec_per_iter, lambda n: w[n.name], gain), gpus, per_gpu, throughput)[0]
    current = span(widths)
    while True:
        critical = _on_critical_path(jobs_of(nets, sec_per_iter, lambda n: widths[n.name], gain))
        best: tuple[float, dict[str, int]] | None = None
        for g in choices:
            if g > gpus:
                continue
            trial = {**widths, **{n: g for n in critical if widths[n] < g}}
            if trial == widths:
                continue
            m = span(trial)
            if m < current * (1 - 1e-9) and (best is None or m < best[0]):
                best = (m, trial)
        if best is None:
            return widths
        current, widths = best


def simulate(name: str, nets: Sequence[Trainable], gpus: int, sec_per_iter: float = SEC_PER_ITER,
             net_gpus: NetGpus = None, figures: Any = None, nets_per_gpu: int | str = 1,
             multi_gpu: bool = False, batch: int | None = None) -> dict[str, Any]:
    """Makespan of plan `name`'s `nets` on `gpus` GPUs under the project's order, with its lower
    bounds (seconds). With `figures` (transfer.plan.speed.Figures): `nets_per_gpu` nets share a GPU
    ("auto": the K with the shortest makespan, the smallest on a tie), multi-GPU nets gain as the
    figures say, and `multi_gpu` widens critical-path nets while that shortens the makespan, to
    widths that divide the train `batch` (each GPU runs batch / G images)."""
    if gpus < 1:
        raise TransferError(f"--gpus must be at least 1, not {gpus}")
    throughput = figures.throughput if figures is not None else {1: 1.0}
    gain = figures.speedup if figures is not None else speedup
    if multi_gpu and figures is None:
        raise TransferError("--multi-gpu auto needs speed figures (--figures)")
    ks = _ks(nets_per_gpu, throughput)
    width = width_of(net_gpus)
    given = {n.name: width(n) for n in nets}
    if not given:
        raise TransferError(f"plan '{name}': no nets to simulate")
    choices = sorted(g for g in (figures.efficiency if figures is not None else ())
                     if g > 1 and (batch is None or batch % g == 0))
    best: tuple[float, int, dict[str, Job], dict[str, tuple[float, float]]] | None = None
    for k in ks:
        w = widen_critical(nets, gpus, sec_per_iter, given, k, throughput, gain, choices) if multi_gpu else given
        jobs = jobs_of(nets, sec_per_iter, lambda n, w=w: w[n.name], gain)
        m, times = makespan_of(jobs, gpus, k, throughput)
        if best is None or m < best[0] * (1 - 1e-9):
            best = (m, k, jobs, times)
    assert best is not None
    return _summary(name, nets, gpus, sec_per_iter, figures, throughput, *best)


def _ks(nets_per_gpu: int | str, throughput: Mapping[int, float]) -> list[int]:
    """The nets-a-GPU counts to simulate: the one given, or ("auto") every count the figures know."""
    if nets_per_gpu == "auto":
        return sorted(throughput)
    if isinstance(nets_per_gpu, int) and nets_per_gpu >= 1:
        return [nets_per_gpu]
    raise TransferError(f"--nets-per-gpu {nets_per_gpu!r}: expected a positive integer or 'auto'")


def _summary(name: str, nets: Sequence[Trainable], gpus: int, sec_per_iter: float, figures: Any,
             throughput: Mapping[int, float], makespan: float, k: int, jobs: dict[str, Job],
             times: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """What `simulate` reports of the chosen schedule, with its lower bounds."""
    critical = max(tails(jobs).values())
    work = sum(j.seconds * j.gpus for j in jobs.values())
    # K nets sharing a GPU get through at most max throughput(j <= K) nets' worth of work on it.
    capacity = max(throughput[j] for j in range(1, k + 1))
    lower = max(critical, work / (gpus * capacity))
    one = jobs_of(nets, sec_per_iter, lambda _n: 1)
    one_bound = one_gpu_bound(one, gpus)
    one_makespan = max(e for _, e in list_schedule(one, gpus).values())
    busy = work / (gpus * makespan * capacity)
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
        "nets_per_gpu": k,
        "multi_gpu_nets": {n: j.gpus for n, j in jobs.items() if j.gpus > 1},
        "figures": None if figures is None else {
            "gpu": figures.gpu, "file": str(figures.path), "sources": figures.sources,
            "throughput": figures.throughput, "multi_gpu_efficiency": figures.efficiency,
            "multi_gpu_measured": figures.multi_gpu_measured},
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
