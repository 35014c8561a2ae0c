"""`transfer submit`: the nets of a plan as SLURM batch jobs, one job a net.

How a net's chain of jobs works (tested against slurm 22.05, tests/test_slurm.py):
  - Job name `transfer:<plan>:<net>`; that is how queued jobs are found again (squeue --me).
  - A net that copies from a base waits on the base's job with `--dependency=afterok:<job>`.
  - The job script runs `transfer train NET` in the background and forwards SIGTERM to it:
    `--signal=B:TERM@<lead>` asks slurm to send TERM to the batch shell <lead> seconds before the
    time limit; preemption sends TERM too. Training snapshots and exits 75 ("resume later").
  - On 75 the job submits a follow-up running the same script (`--dependency=singleton`, so it
    never overlaps a job of the same net), re-points the pending jobs of the nets that copy from
    this one to `afterok:<follow-up>` (`scontrol update JobId=.. Dependency=..`), and exits 75.
    A job exits 0 only when its net is DONE, so a dependent never starts on a half-trained base:
    if re-pointing failed, the dependent sits in DependencyNeverSatisfied, which the next
    `transfer submit` cancels and submits again. (`scontrol requeue` keeps the job id, but a
    requeued job's held/begin-time behaviour and its append-only log differ between sites; the
    follow-up is an ordinary job everywhere.)
  - Priority: jobs are submitted in the project's order (most remaining critical-path work
    first, schedule.order), which the default FIFO and the age factor of priority/multifactor
    both honour; `--nice-span` additionally lowers (only users may only lower) the priority of
    nets off the critical path, by up to that many points.
Several nets a GPU (`--nets-per-gpu K`, K > 1), on any cluster that hands out whole GPUs:
  - A job asks for one GPU (`--gres=gpu:1`; with `--shards`, `--gres=shard:1` where the cluster
    configures GPU sharding) and trains a *pack* of up to K nets on it at once with
    `transfer run --only <the pack> --gpus 0 --nets-per-gpu K`: the runner starts them together,
    forwards TERM (they snapshot and exit 75), and exits 0 only when every net of the pack is done.
  - Packs are cut from nets of one dependency wave (the bases; the nets copying from a base; ...),
    in the project's order, so their nets are ready together: a pack's job waits (`afterok`) on
    every job holding one of its nets' bases. The job name lists the pack, `<net>+<net>+...`.
  - A follow-up continues the whole pack (nets already done are skipped), and the dependents of
    every net of the pack are re-pointed to it, keeping their other dependencies.
  A net on several GPUs (`--net-gpus PATTERN=G`) has a job of its own asking `--gres=gpu:G`.
  `--nets-per-gpu auto` / `--multi-gpu auto` take K and those nets from the makespan simulator, on
  the `--cluster-gpus N` the plan's jobs get at once (transfer/plan/placement.py).
  SLURM's own sharing (`--gres=shard`, or MPS) would let one job a net share a GPU instead; it
  is not configured on most clusters, hence the packs.
Every sbatch, re-pointing and cancel is appended to <runs_dir>/slurm/submissions.jsonl.
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any, Callable

from ..core import argtypes
from ..core.errors import TransferError
from ..core.files import append_jsonl, read_jsonl, shown
from ..plan.load import load_plan
from ..plan.model import Net, Plan
from ..plan.placement import Placement, check_widths, choose
from ..plan.rundir import submissions_file
from ..plan.schedule import jobs_of, parse_net_gpus, tails, width_of
from . import integrity
from .jobscript import JobOptions, write_script
from .options import RunOptions, add_run_options, from_args
from .queue import PACK_SEP, pack_members, queue, sbatch, slurm

STALE_REASON = "DependencyNeverSatisfied"


def state_file(plan: Plan) -> Path:
    return submissions_file(plan.dirs.runs)


def record(plan: Plan, **entry: Any) -> None:
    append_jsonl(state_file(plan), {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry})


def read_records(plan: Plan) -> list[dict[str, Any]]:
    return read_jsonl(state_file(plan))


# ---------------------------------------------------------------------------- submit

def nice_values(plan: Plan, nets: list[Net], span: int) -> dict[str, int]:
    """0 on the critical path, up to `span` for the net with the least tail work."""
    t = tails(jobs_of(plan.nets))
    top = max(t.values())
    return {n.name: round(span * (1 - t[n.name] / top)) for n in nets}


def _cancel_stale(plan: Plan, queue: list[dict[str, str]], dry_run: bool,
                  actions: list[dict[str, Any]]) -> dict[str, str]:
    """Cancel jobs that wait on a job that failed or was replaced; returns net -> live job id."""
    live: dict[str, str] = {}
    for job in queue:
        if job["state"] == "PENDING" and job["reason"] == STALE_REASON:
            # Its base's job failed or was replaced without re-pointing it: it would wait forever.
            actions.append(dict(action="cancel", net=job["net"], job=job["id"], why=STALE_REASON))
            if not dry_run:
                slurm(["scancel", job["id"]])
                record(plan, action="cancel", net=job["net"], job=job["id"], why=STALE_REASON)
        else:
            for net in pack_members(job["net"]):
                live[net] = job["id"]
    return live


def waves(plan: Plan, nets: list[Net]) -> dict[str, int]:
    """How many bases each net's chain has: 0 for nets that copy from none."""
    memo: dict[str, int] = {}

    def depth(net: Net) -> int:
        if net.name not in memo:
            base = plan.base_of(net)
            memo[net.name] = 0 if base is None else depth(base) + 1
        return memo[net.name]
    return {n.name: depth(n) for n in nets}


def packs(plan: Plan, nets: list[Net], size: int, alone: Callable[[Net], bool] = lambda _n: False) -> list[list[Net]]:
    """The nets cut into packs of up to `size` of one dependency wave, in the given (priority)
    order; a pack comes after the packs holding its nets' bases. A net `alone` says so of (one on
    several GPUs) has a job of its own."""
    if size == 1:
        return [[n] for n in nets]
    wave = waves(plan, nets)
    out: list[list[Net]] = []
    for w in sorted(set(wave.values())):
        members = [n for n in nets if wave[n.name] == w]
        out += [[n] for n in members if alone(n)]
        members = [n for n in members if not alone(n)]
        out += [members[i:i + size] for i in range(0, len(members), size)]
    return out


def submit(plan: Plan, opts: JobOptions, only: str | None = None, dry_run: bool = False,
           nice_span: int = 0) -> list[dict[str, Any]]:
    """Submit every selected net that is neither done nor queued; returns what was (or would be) done."""
    nets = plan.with_bases(plan.select(only))
    actions: list[dict[str, Any]] = []
    # A dry run also works away from the cluster (no squeue, or no controller): the queue reads empty.
    live = _cancel_stale(plan, queue(plan, strict=not dry_run), dry_run, actions)
    nice = nice_values(plan, nets, nice_span) if nice_span else {}
    todo = []
    for net in nets:
        if net.run.is_done():
            actions.append(dict(action="done", net=net.name))
        elif net.name in live:
            actions.append(dict(action="queued", net=net.name, job=live[net.name]))
        else:
            todo.append(net)
    others = [p for n in todo if (p := integrity.definition_problem(plan, n)) is not None]
    if others:   # (a job would take another definition's DONE for its own, or train over it)
        raise TransferError("not submitted:\n  " + "\n  ".join(others) + f"\n  ({integrity.START_OVER})")
    check_widths(plan, todo, opts.gpus_of)
    for pack in packs(plan, todo, opts.nets_per_gpu, lambda n: opts.gpus_of(n) > 1):
        key = PACK_SEP.join(n.name for n in pack)
        deps: list[str] = []
        for net in pack:
            base = plan.base_of(net)
            if base is not None and not base.run.is_done():
                dep = live.get(base.name)
                if dep is None:
                    raise TransferError(f"net '{net.name}' copies from '{base.name}', which is neither done "
                                        f"nor queued")
                if dep not in deps:
                    deps.append(dep)
        dep = ":".join(deps) or None
        args = [f"--dependency=afterok:{dep}"] if dep else []
        nice_of = min(nice.get(n.name, 0) for n in pack)  # a pack is as urgent as its most urgent net
        if nice_of:
            args.append(f"--nice={nice_of}")
        script = write_script(plan, pack, opts)
        if dry_run:
            job = f"<{key}>"
        else:
            job = sbatch(script, args)
            record(plan, action="submit", net=key, job=job, after=dep, args=args, script=str(script))
        for net in pack:
            live[net.name] = job
        actions.append(dict(action="submit", net=key, job=job, after=dep, args=args, script=str(script)))
    return actions


def repointed(dependency: str, replaces: str, new: str) -> str:
    """A pending job's dependency (squeue's %E, e.g. `afterok:12(unfulfilled),afterok:13(unfulfilled)`)
    with job `replaces` swapped for `new`; satisfied dependencies are dropped."""
    ids = [m.group(1) for m in re.finditer(r"afterok:(\d+)(?:\((\w+)\))?", dependency)
           if m.group(2) in (None, "unfulfilled")]
    keep = [i for i in ids if i != replaces]
    return "afterok:" + ":".join(dict.fromkeys([*keep, new]))


def follow_up(plan: Plan, net_name: str, replaces: str, follow_ups: int) -> str | None:
    """Called by a job whose training was interrupted: submit the same script again and move the
    dependents' afterok over to the new job. Returns the new job id (None if the net is done).
    `net_name` may be a pack, `a+b+c`: the script is the first net's, the dependents all of theirs."""
    members = [plan.net(n) for n in pack_members(net_name)]
    net = members[0]
    if all(m.run.is_done() for m in members):
        return None
    script = net.run.job_script
    if not script.is_file():
        raise TransferError(f"{shown(script)} does not exist: submit net '{net_name}' with `transfer submit`")
    new = sbatch(script, ["--dependency=singleton", f"--export=ALL,TRANSFER_FOLLOW_UPS={follow_ups}"])
    record(plan, action="follow-up", net=net_name, job=new, replaces=replaces, follow_ups=follow_ups)
    dependents = {d.name for m in members for d in plan.dependents(m.name)}
    for job in queue(plan, strict=True):
        if dependents & set(pack_members(job["net"])) and job["state"] == "PENDING":
            dep = repointed(job["dependency"], replaces, new)
            slurm(["scontrol", "update", f"JobId={job['id']}", f"Dependency={dep}"])
            record(plan, action="re-point", net=job["net"], job=job["id"], after=new, was=job["dependency"])
    return new


# ---------------------------------------------------------------------------- CLI

def _time_ok(value: str) -> str:
    if not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", value):
        raise argparse.ArgumentTypeError(f"--time {value!r}: expected minutes, HH:MM:SS or D-HH:MM:SS")
    return value


def plan_arg(plan: Plan, given: str) -> str:
    """The --plan value a job passes on: a YAML file by absolute path (jobs cd to the repo)."""
    return str(plan.path.resolve()) if given.endswith((".yaml", ".yml")) else given


def placement(args: argparse.Namespace, plan: Plan) -> Placement:
    """--nets-per-gpu and --net-gpus as given, or as the simulator chooses them for the plan's
    remaining nets on the cluster's --cluster-gpus GPUs."""
    auto = args.nets_per_gpu == "auto" or args.multi_gpu == "auto"
    if args.cluster_gpus is not None and args.cluster_gpus < 1:
        raise TransferError(f"--cluster-gpus must be at least 1, not {args.cluster_gpus}")
    if auto and args.cpu:
        raise TransferError("--nets-per-gpu auto and --multi-gpu auto choose GPU placements; not with --cpu")
    if auto and not args.cluster_gpus:
        raise TransferError("--nets-per-gpu auto and --multi-gpu auto need --cluster-gpus N: how many GPUs "
                            "the plan's jobs get at once (the simulator plays the plan out on them)")
    nets = plan.with_bases(plan.select(args.only))
    given = parse_net_gpus(args.net_gpus)
    check_widths(plan, nets, width_of(given), args.cluster_gpus, "--cluster-gpus")   # before simulating
    return choose(plan, nets, args.cluster_gpus or 1, args.nets_per_gpu, args.multi_gpu == "auto", given,
                  args.figures)


def options(args: argparse.Namespace, plan: Plan, place: Placement, run: RunOptions) -> JobOptions:
    """The job options a `transfer submit` command line asks for, with the nets placed as `place` says."""
    return JobOptions(plan_arg=plan_arg(plan, args.plan), time=args.time, partition=args.partition,
                      account=args.account, gpus_per_job=args.gpus_per_job,
                      nets_per_gpu=place.nets_per_gpu, net_gpus=tuple(place.net_gpus.items()), shards=args.shards,
                      cpus_per_job=args.cpus_per_job, signal_lead=args.signal_lead,
                      sbatch_args=tuple(args.sbatch_arg or ()), run=run,
                      **({"transfer_cmd": args.transfer_cmd} if args.transfer_cmd else {}))


def _print_actions(plan: Plan, actions: list[dict[str, Any]], dry_run: bool, verbose: bool) -> None:
    counts: dict[str, int] = {}
    for a in actions:
        counts[a["action"]] = counts.get(a["action"], 0) + 1
        if a["action"] == "submit":
            after = f"  after {a['after']}" if a["after"] else ""
            print(f"{'would submit' if dry_run else 'submitted'} {a['job']:>10}  {a['net']}{after}")
        elif a["action"] == "cancel":
            print(f"{'would cancel' if dry_run else 'cancelled'} {a['job']:>10}  {a['net']} ({a['why']})")
        elif verbose:
            print(f"{a['action']:>20}  {a['net']} {a.get('job', '')}")
    summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "nothing selected"
    print(f"plan {plan.name}: {summary}" + (" (dry run: job scripts written, nothing submitted)"
                                            if dry_run else ""))


def _submit_cmd(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    if args.follow_up:
        new = follow_up(plan, args.follow_up, args.replaces or "?", args.follow_ups)
        print(f"transfer submit: {args.follow_up} is done" if new is None else
              f"transfer submit: {args.follow_up} continues in job {new} (replacing {args.replaces})")
        return 0
    run = from_args(plan, args, nets_per_gpu=None, net_gpus=None, multi_gpu=None, figures=None)
    place = placement(args, plan)
    if place.chosen:
        print(f"placement: {place.describe()}")
    actions = submit(plan, options(args, plan, place, run), args.only, args.dry_run, args.nice_span)
    _print_actions(plan, actions, args.dry_run, args.verbose)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit the plan's nets as SLURM jobs (one a net, resumed until done)")
    p.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file")
    p.add_argument("--only", help="comma-separated name patterns; bases they need are added")
    p.add_argument("--slurm", action="store_true", default=True, help="submit to SLURM (the only backend)")
    p.add_argument("--partition", help="sbatch --partition")
    p.add_argument("--account", help="sbatch --account")
    p.add_argument("--time", type=_time_ok, default="48:00:00", help="time limit a job (default 48:00:00); "
                   "a net longer than that continues in follow-up jobs")
    p.add_argument("--gpus-per-job", type=int, default=1, metavar="N", help="GPUs a job (--gres=gpu:N)")
    add_run_options(p, "a job trains a pack of up to K nets of one dependency wave at once on its GPU")
    p.add_argument("--cluster-gpus", type=int, metavar="N",
                   help="GPUs the plan's jobs get at once, for --nets-per-gpu auto and --multi-gpu auto")
    p.add_argument("--shards", action="store_true",
                   help="ask --gres=shard:1 (a GPU share, where the cluster configures shards) instead of "
                        "--gres=gpu:N")
    p.add_argument("--cpu", action="store_true", help="train on CPU (no GPU requested)")
    p.add_argument("--cpus-per-job", type=argtypes.whole(1), metavar="N", help="sbatch --cpus-per-task (default 1 with --cpu)")
    p.add_argument("--signal-lead", type=int, default=120, metavar="S",
                   help="seconds before the time limit at which training is told to snapshot (default 120)")
    p.add_argument("--nice-span", type=argtypes.whole(0), default=0, metavar="N",
                   help="lower the priority of nets off the critical path by up to N (sbatch --nice)")
    p.add_argument("--sbatch-arg", action="append", metavar="ARG",
                   help="extra '#SBATCH ARG' line, e.g. --sbatch-arg=--constraint=k20 (repeatable)")
    p.add_argument("--transfer-cmd", metavar="CMD",
                   help="how jobs run transfer (default: this Python with -m transfer)")
    p.add_argument("--dry-run", action="store_true", help="write the job scripts, print, submit nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="also list nets done or already queued")
    # Used by the job scripts themselves, not by hand.
    p.add_argument("--follow-up", metavar="NET", help=argparse.SUPPRESS)
    p.add_argument("--replaces", metavar="JOBID", help=argparse.SUPPRESS)
    p.add_argument("--follow-ups", type=argtypes.whole(0), default=1, help=argparse.SUPPRESS)
    p.set_defaults(func=_submit_cmd)

