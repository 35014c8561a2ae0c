"""Train every selected net of a plan on this machine (`transfer run`).

Each net is a `transfer train` subprocess, so one net's crash, lock or signal is that process's
business; the runner only schedules: base nets before the nets copying from them, ready nets with
the longest remaining chain first, up to K nets per GPU (`--nets-per-gpu`, default 1) or one per
CPU job. A net given several GPUs (`--net-gpus PATTERN=G`) takes G whole GPUs (caffe's multi-GPU
training); it waits until that many are idle. `--nets-per-gpu auto` and `--multi-gpu auto` take both
choices from the makespan simulator (transfer/plan/placement.py). A net locked by another process (a second runner,
a SLURM job) is waited for, not trained twice.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .. import REPO
from ..core import argtypes, stopsig
from ..core.console import relay, stage
from ..core.errors import Exit, TransferError
from ..core.files import duration, shown
from ..plan.load import load_plan
from ..plan.model import Net, Plan
from ..plan.netfiles import write_plan
from ..plan.placement import Placement, check_widths, choose
from ..plan.schedule import width_of
from . import preflight
from .options import PROGRESS_EVERY_S, RunOptions, add_retrain_option, add_run_options, from_args, parse_gpus
from .progress import net_state, progress_line

POLL_S = 0.5
log = stage("run")


def ensure_net_files(plan: Plan, nets: list[Net]) -> None:
    missing = [p for n in nets for p in n.files.generated() if not p.is_file()]
    if missing:
        log.info("writing net files (%d missing, e.g. %s)", len(missing), shown(missing[0]))
        write_plan(plan)


@dataclass
class _Job:
    net: Net
    proc: subprocess.Popen
    devices: tuple[str, ...]
    started: float


@dataclass
class Pool:
    """Devices (GPU ids, or CPU job slots) that each hold up to `per_device` nets at once. A net on
    one device takes one of its places; a net on several takes every place of each (a GPU running
    a multi-GPU net runs nothing else)."""

    devices: list[str]
    per_device: int = 1
    load: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.per_device < 1:
            raise TransferError(f"--nets-per-gpu must be a positive integer, not {self.per_device}")
        self.load = {d: 0 for d in self.devices}

    @property
    def places(self) -> int:
        return len(self.devices) * self.per_device

    def place(self, width: int = 1) -> tuple[str, ...] | None:
        """Devices for a net on `width` of them, or None when they are busy. One device: the least
        loaded (nets spread over the GPUs before they share one)."""
        if width == 1:
            best = min(self.devices, key=lambda d: self.load[d])
            return (best,) if self.load[best] < self.per_device else None
        idle = [d for d in self.devices if self.load[d] == 0]
        return tuple(idle[:width]) if len(idle) >= width else None

    def take(self, devices: tuple[str, ...]) -> None:
        for d in devices:
            self.load[d] += 1 if len(devices) == 1 else self.per_device

    def release(self, devices: tuple[str, ...]) -> None:
        for d in devices:
            self.load[d] -= 1 if len(devices) == 1 else self.per_device


def _pump(proc: subprocess.Popen, tag: str) -> None:
    for line in proc.stdout:
        relay(tag, line)


class Runner:
    """Starts each net as a `transfer train` child when its base is done and a place is free."""

    def __init__(self, plan: Plan, nets: list[Net], pool: Pool, options: RunOptions,
                 width: Callable[[Net], int] = lambda _net: 1):
        self.plan, self.nets, self.pool, self.options, self.width = plan, nets, pool, options, width
        self.cpu = options.cpu
        self.progress_every = options.progress_every
        self.done: set[str] = {n.name for n in nets if n.run.is_done()}
        self.failed: dict[str, str] = {}      # name -> why
        self.skipped: dict[str, str] = {}     # name -> failed ancestor
        self.interrupted: set[str] = set()
        self.elsewhere: set[str] = set()      # locked by another process: wait for it
        self.jobs: dict[str, _Job] = {}
        self.stopping: str | None = None

    # -- scheduling
    def ready(self) -> list[Net]:
        out = []
        for net in self.nets:  # already in plan.ordered() order: critical path first
            name = net.name
            if name in self.done or name in self.failed or name in self.skipped or name in self.jobs \
                    or name in self.interrupted:
                continue
            base = self.plan.base_of(net)
            if base is not None and (base.name in self.jobs or not base.run.is_done()):
                continue  # (a base still in self.jobs is reaped, and reported, first)
            holder = net.run.lock_holder()
            if holder is not None:
                if name not in self.elsewhere:
                    log.info("%s: trained by another process (%s:%s); waiting", name, holder.get("host"),
                             holder.get("pid"))
                self.elsewhere.add(name)
                continue
            out.append(net)
        return out

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.cpu:
            # Jobs share the cores: one BLAS thread each unless there are cores to spare.
            threads = max(1, (os.cpu_count() or 1) // max(1, self.pool.places))
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(threads)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def command(self, net: Net, devices: tuple[str, ...]) -> list[str]:
        """The `transfer train` command of a net on these devices (GPU ids, or a CPU job slot)."""
        cmd = [sys.executable, "-m", "transfer", "train", net.name, "--plan", str(self.plan.path)]
        cmd += ["--cpu"] if self.cpu else ["--gpu", ",".join(devices)]
        cmd += ["--progress-every", "0"]  # the runner prints every net's progress itself
        return cmd + self.options.train_args()

    def start(self, net: Net, devices: tuple[str, ...]) -> None:
        cmd = self.command(net, devices)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=REPO, env=self._env())
        threading.Thread(target=_pump, args=(proc, net.name), daemon=True).start()
        self.jobs[net.name] = _Job(net, proc, devices, time.time())
        self.pool.take(devices)
        self.elsewhere.discard(net.name)
        where = "CPU" if self.cpu else f"GPU{'s' if len(devices) > 1 else ''} {','.join(devices)}"
        log.info("start %s on %s (%d/%d done)", net.name, where, len(self.done), len(self.nets))

    def reap(self) -> None:
        for name, job in list(self.jobs.items()):
            rc = job.proc.poll()
            if rc is None:
                continue
            del self.jobs[name]
            self.pool.release(job.devices)
            took = time.time() - job.started
            if rc == Exit.OK and job.net.run.is_done():
                self.done.add(name)
                log.info("done  %s (%s; %d/%d done)", name, duration(took), len(self.done), len(self.nets))
            elif rc == Exit.LOCKED:
                self.elsewhere.add(name)  # lost a race with another process: wait for it
            elif rc == Exit.INTERRUPTED:
                self.interrupted.add(name)
                log.info("stopped %s with a snapshot (resume: run again)", name)
            else:
                record = job.net.run.failed_record() if rc in (Exit.FAILED, Exit.NO_SPACE) else None
                why = (record or {}).get("error") or f"exit {rc}"
                self.failed[name] = why
                log.info("FAILED %s: %s; see %s", name, why, shown(job.net.run.logs_dir))
                self._skip_dependents(name)

    def _skip_dependents(self, name: str) -> None:
        for dep in self.plan.dependents(name):
            if dep.name in {n.name for n in self.nets} and dep.name not in self.skipped:
                self.skipped[dep.name] = name
                log.info("skip  %s: its base %s failed", dep.name, name)
                self._skip_dependents(dep.name)

    def watch_elsewhere(self) -> None:
        for name in list(self.elsewhere):
            net = self.plan.net(name)
            if net.run.is_done():
                self.elsewhere.discard(name)
                self.done.add(name)
                log.info("done  %s (by another process; %d/%d done)", name, len(self.done), len(self.nets))
            elif not net.run.is_locked():
                self.elsewhere.discard(name)  # the other process stopped or died: ready again

    def progress(self) -> None:
        for name, job in self.jobs.items():
            log.info("  %s: %s", name, progress_line(net_state(self.plan, job.net)))

    # -- main loop
    def _on_signal(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        if not self.stopping:
            self.stopping = name
            # Children in our process group got a terminal's Ctrl-C already; a kill/SIGTERM did not.
            for job in self.jobs.values():
                try:
                    job.proc.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)
                except ProcessLookupError:
                    pass

    def run(self) -> int:
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        if stopsig.received():  # while the command was starting: start nothing
            self.stopping = stopsig.received()
        last_progress = time.time()
        try:
            log.info("plan %s: %d nets, %d done already; %d at a time on %s", self.plan.name, len(self.nets),
                     len(self.done), self.pool.places, "CPU" if self.cpu else "GPUs " + ",".join(self.pool.devices)
                     + (f", {self.pool.per_device} a GPU" if self.pool.per_device > 1 else ""))
            while True:
                self.reap()
                self.watch_elsewhere()
                if self.stopping:
                    if not self.jobs:
                        break
                    if self.stopping != "announced":
                        log.info("%s: waiting for %d net(s) to snapshot", self.stopping, len(self.jobs))
                        self.stopping = "announced"
                else:
                    for net in self.ready():  # in priority order; a wide net does not block narrow ones
                        devices = self.pool.place(self.width(net))
                        if devices is not None:
                            self.start(net, devices)
                    if not self.jobs and not self.elsewhere:
                        break  # nothing running, nothing startable
                if time.time() - last_progress >= self.progress_every and self.jobs:
                    self.progress()
                    last_progress = time.time()
                time.sleep(POLL_S)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return self.summary()

    def summary(self) -> int:
        names = [n.name for n in self.nets]
        left = [n for n in names if n not in self.done]
        log.info(f"{len(self.done)}/{len(names)} done"
             + (f"; failed: {', '.join(self.failed)}" if self.failed else "")
             + (f"; skipped (base failed): {', '.join(self.skipped)}" if self.skipped else "")
             + (f"; stopped with a snapshot: {', '.join(sorted(self.interrupted))}" if self.interrupted else ""))
        if self.failed:
            return Exit.FAILED
        if left:
            blocked = [n for n in left if n not in self.interrupted]
            if blocked and not self.stopping and not self.interrupted:
                log.info("not trained: %s", ", ".join(blocked))
            return Exit.INTERRUPTED
        return Exit.OK


def run_plan(plan: Plan, only: str | None = None, options: RunOptions | None = None) -> int:
    """Train the selected nets (and their unfinished bases); returns an exit status.
    `nets_per_gpu="auto"` and `multi_gpu` take the placement the simulator finds shortest on these
    GPUs (placement.choose)."""
    options = options or RunOptions.of(plan)
    ensure_net_files(plan, list(plan.nets))   # the plan's files first: which run directories are done compares them
    nets = plan.with_bases(plan.select(only))
    if options.cpu or not options.gpus:
        options = options.with_(cpu=True)
        place = Placement(1)
        pool = Pool([f"cpu{i}" for i in range(options.jobs)])
    else:
        given = dict(options.net_gpus)
        check_widths(plan, nets, width_of(given), len(options.gpus))   # what was given, before simulating with it
        place = choose(plan, nets, len(options.gpus), options.nets_per_gpu, options.multi_gpu, given,
                       options.figures)
        pool = Pool([str(g) for g in options.gpus], place.nets_per_gpu)
        if place.chosen or place.nets_per_gpu > 1 or place.net_gpus:
            log.info("placement: %s", place.describe())
    log.info("preflight: %s", preflight.check(plan, nets, training={n.name for n in nets}, retrain=options.retrain))
    return Runner(plan, nets, pool, options, place.width()).run()


# ---------------------------------------------------------------------------- CLI

def _run_cmd(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    options = from_args(plan, args)
    if not options.cpu and not options.gpus and plan.solver_mode == "GPU":
        raise TransferError(f"plan '{plan.name}' trains on GPUs: give --gpus 0,1,... (or --cpu)")
    return run_plan(plan, args.only, options)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train every selected net of a plan on this machine")
    p.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file (default paper)")
    p.add_argument("--only", help="comma-separated name patterns (their unfinished bases come too)")
    p.add_argument("--gpus", type=parse_gpus, metavar="LIST",
                   help="GPU ids to use, e.g. 0,1,2,3 (one net a GPU unless --nets-per-gpu)")
    add_run_options(p, "train up to K nets at once on each GPU")
    p.add_argument("--cpu", action="store_true", help="train on the CPU")
    p.add_argument("--jobs", type=argtypes.whole(1), default=1, help="nets at once on the CPU (default 1)")
    p.add_argument("--max-seconds", type=argtypes.positive, help="per net: snapshot and stop after S seconds")
    p.add_argument("--progress-every", type=argtypes.positive, default=PROGRESS_EVERY_S, metavar="S",
                   help="seconds between progress lines (default %(default)s)")
    add_retrain_option(p)
    p.set_defaults(func=_run_cmd)

