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
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

from .. import REPO
from ..caffe import precision as precision_
from ..core import argtypes
from ..core.errors import Exit, TransferError
from ..core.files import append_jsonl, atomic_write, read_jsonl, repo_path, shown
from ..plan.model import Net, Plan, load_plan
from ..plan.rundir import RunDir, submissions_file
from ..plan.placement import Placement, add_placement_options, check_widths, choose
from ..plan.schedule import jobs_of, parse_net_gpus, tails, width_of

STALE_REASON = "DependencyNeverSatisfied"
MAX_FOLLOW_UPS = 100   # a net that never reaches a snapshot must not resubmit itself forever


# ---------------------------------------------------------------------------- names and files

def job_name(plan: Plan, net_name: str) -> str:
    """`transfer:<plan>-<6 hex of its runs directory>:<net>`: two checkouts (or copies) of one plan
    train into different run directories, and must not take each other's jobs for their own."""
    where = hashlib.sha256(str(repo_path(plan.dirs.runs).resolve()).encode()).hexdigest()[:6]
    return f"transfer:{plan.name}-{where}:{net_name}"


def state_file(plan: Plan) -> Path:
    return submissions_file(plan.dirs.runs)


def record(plan: Plan, **entry: Any) -> None:
    append_jsonl(state_file(plan), {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry})


def read_records(plan: Plan) -> list[dict[str, Any]]:
    return read_jsonl(state_file(plan))


# ---------------------------------------------------------------------------- slurm commands

def _slurm(cmd: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise TransferError(f"`{cmd[0]}` not found on PATH: run `transfer submit` on a SLURM login node "
                            f"(or use --dry-run)")
    try:
        proc = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if check:
            raise TransferError(f"`{shlex.join(cmd)}` did not answer in {timeout:.0f} s: is slurmctld up?") from None
        return subprocess.CompletedProcess(cmd, 124, "", "timed out")
    if check and proc.returncode:
        raise TransferError(f"`{shlex.join(cmd)}` failed ({proc.returncode}): "
                            f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def _queue(plan: Plan, strict: bool) -> list[dict[str, str]]:
    """This user's jobs of this plan, oldest first."""
    conf = os.environ.get("SLURM_CONF")
    if shutil.which("squeue") is None or (conf and not Path(conf).is_file()):
        if strict:
            raise TransferError("`squeue` not found on PATH: is this a SLURM login node?" if not conf or
                                Path(conf).is_file() else f"SLURM_CONF={conf}: no such file")
        return []
    # Not strict (`transfer status`, dry runs): a missing controller must not hang the caller long.
    proc = _slurm(["squeue", "--me", "--noheader", "--format=%i|%j|%T|%r|%E"], check=strict,
                  timeout=120 if strict else 15)
    if proc.returncode:
        return []
    prefix = job_name(plan, "")
    jobs = []
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) == 5 and parts[1].startswith(prefix):
            jobs.append(dict(id=parts[0], net=parts[1][len(prefix):], state=parts[2], reason=parts[3],
                             dependency=parts[4]))
    return sorted(jobs, key=lambda j: int(re.sub(r"\D.*", "", j["id"]) or 0))


class SlurmJob(NamedTuple):
    id: str
    state: str

    def __str__(self) -> str:  # how `transfer status` shows it
        return f"{self.id} {self.state}"


def queued_jobs(plan: Plan, strict: bool = False) -> dict[str, SlurmJob]:
    """net name -> (job id, state) of the newest queued or running SLURM job of each net.

    The newest, because after a time limit the follow-up is the job that will finish the net.
    Without squeue (not a cluster) the answer is empty unless strict.
    """
    out: dict[str, SlurmJob] = {}
    for job in _queue(plan, strict):
        for net in pack_members(job["net"]):
            out[net] = SlurmJob(job["id"], job["state"])
    return out


PACK_SEP = "+"


def pack_members(key: str) -> list[str]:
    """The nets of a job: one net, or a pack `a+b+c` (net names hold no '+': spec.SAFE)."""
    return key.split(PACK_SEP)


def sbatch(script: Path, args: list[str]) -> str:
    proc = _slurm(["sbatch", "--parsable", *args, str(script)])
    return proc.stdout.strip().split(";")[0]


# ---------------------------------------------------------------------------- the job script

JOB_SCRIPT = """\
#!/bin/bash
# Generated by `transfer submit` for net {net} of plan {plan}; rewritten on every submit.
# Trains the net (resuming from its newest snapshot); on a time limit or preemption the training
# snapshots and exits 75, and this job submits a follow-up of itself (see transfer/train/slurm.py).
#SBATCH --job-name={job_name}
#SBATCH --output={log_dir}
#SBATCH --time={time}
#SBATCH --signal=B:TERM@{signal_lead}
#SBATCH --nodes=1
#SBATCH --ntasks=1
{resources}
set -u
cd {repo}
NET={net_q}
PLAN={plan_q}
TRANSFER=({transfer})
follow_ups=${{TRANSFER_FOLLOW_UPS:-0}}
echo "transfer-job: start $(date +%s) job=${{SLURM_JOB_ID:-}} net=$NET host=$(hostname) follow_ups=$follow_ups"
if {done_test}; then echo "transfer-job: $NET is already done"; exit 0; fi

# slurm signals this shell only (B:TERM): pass it on to the training, which snapshots and exits 75.
child=
trap 'echo "transfer-job: SIGTERM at $(date +%s), stopping the training"; [ -n "$child" ] && kill -TERM "$child"' TERM
{train} &
child=$!
while kill -0 "$child" 2>/dev/null; do wait "$child"; done
wait "$child"; rc=$?
echo "transfer-job: end $(date +%s) rc=$rc"

if [ "$rc" -eq {tempfail} ]; then
    if [ "$follow_ups" -ge {max_follow_ups} ]; then
        echo "transfer-job: $NET interrupted {max_follow_ups} times; not resubmitting (run transfer submit)"
    else
        "${{TRANSFER[@]}}" submit --plan "$PLAN" --follow-up "$NET" --replaces "${{SLURM_JOB_ID:-0}}" \\
            --follow-ups "$((follow_ups + 1))" || echo "transfer-job: follow-up submission failed"
    fi
fi
# 0 only when the net is done: jobs waiting on afterok must not start on a half-trained base.
exit "$rc"
"""



@dataclass(frozen=True)
class JobOptions:
    """What every job of a submission asks SLURM for, and how it runs `transfer train`."""

    plan_arg: str                       # the --plan value jobs pass on
    time: str = "48:00:00"
    partition: str | None = None
    account: str | None = None
    cpu: bool = False
    gpus_per_job: int = 1
    nets_per_gpu: int = 1               # > 1: a job trains a pack of up to this many nets on its GPU
    net_gpus: tuple[tuple[str, int], ...] = ()  # (name pattern, GPUs): such a net's job has that many GPUs
    shards: bool = False                # ask --gres=shard:1 (a configured GPU share) instead of a GPU
    cpus_per_job: int | None = None
    signal_lead: int = 120
    sbatch_args: tuple[str, ...] = ()
    transfer_cmd: str = shlex.join([sys.executable, "-m", "transfer"])
    train_args: tuple[str, ...] = ()    # more `transfer train` options (--precision, --deterministic)

    def gpus_of(self, net: Net) -> int:
        """The GPUs of the job of `net`: --gpus-per-job, or the last --net-gpus pattern it matches."""
        return width_of(dict(self.net_gpus))(net) if self.net_gpus else self.gpus_per_job

    def __post_init__(self) -> None:
        if self.gpus_per_job < 1:
            raise TransferError(f"--gpus-per-job must be at least 1, not {self.gpus_per_job}")
        if self.nets_per_gpu < 1:
            raise TransferError(f"--nets-per-gpu must be a positive integer, not {self.nets_per_gpu}")
        if self.nets_per_gpu > 1 and self.gpus_per_job > 1:
            raise TransferError("give --nets-per-gpu K (several nets on one GPU) or --gpus-per-job N (one net "
                                "on N GPUs), not both")
        if self.net_gpus and (self.gpus_per_job > 1 or self.cpu):
            raise TransferError("give --gpus-per-job N (every net on N GPUs) or --net-gpus/--multi-gpu auto "
                                "(some nets on several GPUs), not both" if not self.cpu else
                                "--net-gpus and --multi-gpu need GPU jobs, not --cpu")
        if self.signal_lead < 0:
            raise TransferError(f"--signal-lead must not be negative, not {self.signal_lead}")


def _one_line(value: str, what: str) -> str:
    """A value for the job script: a newline or other control character would start a line of
    its own (a command, or an #SBATCH option) whatever the quoting, so it is refused."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise TransferError(f"{what} {value!r} holds a control character (a newline?); it cannot go into "
                            "a job script")
    return value


def _sbatch_word(value: str, what: str) -> str:
    """A value of an #SBATCH line, which sbatch (not the shell) splits at blanks: double-quoted,
    with backslash escapes, when it holds a blank or a quote."""
    _one_line(value, what)
    if not re.search(r"[\s\"'\\]", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def job_script(plan_name: str, net_name: str, job: str, run: RunDir, opts: JobOptions, repo: Path,
               pack: tuple[RunDir, ...] = (), gpus: int | None = None) -> str:
    """The batch script of one net's jobs, or of a pack's (`pack`: the run directories of its nets,
    `net_name` their names joined by '+'; `run` the first's, which holds the script), on `gpus`
    GPUs (default --gpus-per-job; a pack's job has one). A pure
    function: the same inputs, the same text. Every value the shell runs is quoted (shlex.quote);
    #SBATCH values are quoted for sbatch."""
    for value, what in ((plan_name, "plan name"), (net_name, "net name"), (opts.plan_arg, "--plan"),
                        (str(repo), "repository path"), (str(run.path), "run directory")):
        _one_line(value, what)
    res = []
    if opts.partition:
        res.append(f"#SBATCH --partition={_sbatch_word(opts.partition, '--partition')}")
    if opts.account:
        res.append(f"#SBATCH --account={_sbatch_word(opts.account, '--account')}")
    if opts.cpu:
        device = "--cpu"
    else:
        # With --gres, slurm sets CUDA_VISIBLE_DEVICES to the allocated GPUs, so they count from 0.
        # Several GPUs a job: the net trains on all of them (caffe -gpu 0,1,..; the batch is split).
        gpus = gpus or opts.gpus_per_job
        res.append("#SBATCH --gres=shard:1" if opts.shards and gpus == 1 else f"#SBATCH --gres=gpu:{gpus}")
        device = "--gpu " + ",".join(str(g) for g in range(gpus))
    # more `transfer train` options; `transfer run` (a pack) passes them on to each net's train
    extra = " " + shlex.join(_one_line(a, "train option") for a in opts.train_args) if opts.train_args else ""
    if opts.cpus_per_job or opts.cpu:
        res.append(f"#SBATCH --cpus-per-task={opts.cpus_per_job or 1}")
    res += [f"#SBATCH {_one_line(a, '--sbatch-arg')}" for a in opts.sbatch_args]
    if pack:
        # The runner trains the pack's nets at once (K on the job's GPU, or K CPU jobs).
        where = f"--cpu --jobs {opts.nets_per_gpu}" if opts.cpu else f"--gpus 0 --nets-per-gpu {opts.nets_per_gpu}"
        train = (f'"${{TRANSFER[@]}}" run --only {shlex.quote(",".join(pack_members(net_name)))} --plan "$PLAN" '
                 f'{where}{extra} --progress-every 600')
        done_test = " && ".join(f"[ -e {shlex.quote(str(r.done_file))} ]" for r in pack)
    else:
        train = f'"${{TRANSFER[@]}}" train "$NET" --plan "$PLAN" {device}{extra}'
        done_test = f"[ -e {shlex.quote(str(run.done_file))} ]"
    return JOB_SCRIPT.format(
        net=shlex.quote(net_name), plan=shlex.quote(plan_name), job_name=_sbatch_word(job, "job name"),
        log_dir=_sbatch_word(f"{run.slurm_dir}/%j.out", "run directory"), time=_sbatch_word(opts.time, "--time"),
        signal_lead=opts.signal_lead, resources="\n".join(res), repo=shlex.quote(str(repo)),
        net_q=shlex.quote(net_name), plan_q=shlex.quote(opts.plan_arg), transfer=opts.transfer_cmd,
        train=train, done_test=done_test, tempfail=int(Exit.INTERRUPTED),
        max_follow_ups=MAX_FOLLOW_UPS)


def write_script(plan: Plan, nets: list[Net], opts: JobOptions) -> Path:
    """The job script of one net, or of a pack of nets (several, or any with --nets-per-gpu > 1):
    kept in the first net's run directory."""
    net, key = nets[0], PACK_SEP.join(n.name for n in nets)
    path = net.run.job_script
    gpus = opts.gpus_of(net)
    pack = tuple(n.run for n in nets) if opts.nets_per_gpu > 1 and gpus == 1 else ()
    atomic_write(path, job_script(plan.name, key, job_name(plan, key), net.run, opts, REPO, pack, gpus))
    path.chmod(0o755)  # (atomic: a follow-up may be reading the old one right now)
    return path


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
                _slurm(["scancel", job["id"]])
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
    live = _cancel_stale(plan, _queue(plan, strict=not dry_run), dry_run, actions)
    nice = nice_values(plan, nets, nice_span) if nice_span else {}
    todo = []
    for net in nets:
        if net.run.is_done():
            actions.append(dict(action="done", net=net.name))
        elif net.name in live:
            actions.append(dict(action="queued", net=net.name, job=live[net.name]))
        else:
            todo.append(net)
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
    for job in _queue(plan, strict=True):
        if dependents & set(pack_members(job["net"])) and job["state"] == "PENDING":
            dep = repointed(job["dependency"], replaces, new)
            _slurm(["scontrol", "update", f"JobId={job['id']}", f"Dependency={dep}"])
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


def options(args: argparse.Namespace, plan: Plan, place: Placement) -> JobOptions:
    """The job options a `transfer submit` command line asks for, with the nets placed as `place` says."""
    return JobOptions(plan_arg=plan_arg(plan, args.plan), time=args.time, partition=args.partition,
                      account=args.account, cpu=args.cpu, gpus_per_job=args.gpus_per_job,
                      nets_per_gpu=place.nets_per_gpu, net_gpus=tuple(place.net_gpus.items()), shards=args.shards,
                      cpus_per_job=args.cpus_per_job, signal_lead=args.signal_lead,
                      sbatch_args=tuple(args.sbatch_arg or ()),
                      train_args=tuple(precision_.cli_args(args.precision, args.deterministic)),
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
    place = placement(args, plan)
    if place.chosen:
        print(f"placement: {place.describe()}")
    actions = submit(plan, options(args, plan, place), args.only, args.dry_run, args.nice_span)
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
    add_placement_options(p, "a job trains a pack of up to K nets of one dependency wave at once on its GPU")
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
    precision_.add_options(p)
    p.add_argument("--dry-run", action="store_true", help="write the job scripts, print, submit nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="also list nets done or already queued")
    # Used by the job scripts themselves, not by hand.
    p.add_argument("--follow-up", metavar="NET", help=argparse.SUPPRESS)
    p.add_argument("--replaces", metavar="JOBID", help=argparse.SUPPRESS)
    p.add_argument("--follow-ups", type=argtypes.whole(0), default=1, help=argparse.SUPPRESS)
    p.set_defaults(func=_submit_cmd)

