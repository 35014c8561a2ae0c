"""Train one net with the real `caffe` binary: resumable, locked, checked (`transfer train`).

Every file it reads or writes is its run directory's (transfer/plan/rundir.py). The first attempt
starts from init.solverstate (iteration 0, init.caffemodel, zero momentum); later ones resume
from the newest readable snapshot. A stop (SIGINT/SIGTERM, --max-seconds) makes caffe snapshot and
the process exit Exit.INTERRUPTED (75): not finished, run again to resume. A loss that stops being
finite ends the attempt at once as FAILED (diverged); a full disk with Exit.NO_SPACE (74). Before
caffe starts, the run directory must hold the plan's definition of the net and the init weights
surgery wrote (transfer/train/integrity.py). How it trains (device, precision) is one RunOptions
(transfer/train/options.py).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ..caffe import cudnn_algos
from ..caffe import gpu as gpu_info
from ..caffe import logs
from ..caffe import precision as precision_
from ..core import argtypes, locks, stopsig
from ..core.console import stage
from ..core.errors import Exit, NoSpaceError, TransferError, space_error
from ..core.files import duration, shown
from ..plan.load import load_plan
from ..plan.model import Net, Plan
from ..plan.rundir import RunDir
from . import integrity, outcome, preflight
from .caffe_proc import Ended, Stop, caffe_command, run_caffe
from .options import PROGRESS_EVERY_S, Device, RunOptions, add_retrain_option, from_args, parse_gpus
from .runfiles import movable_state, per_gpu_batch_of, start_state, write_run_files
from .surgery import make_init

log = stage("train")


# ---------------------------------------------------------------------------- one attempt

def _attempt(plan: Plan, net: Net, device: Device, lock: locks.Lock, stop: Stop, record: dict[str, Any],
             progress_every: float) -> int:
    """One caffe run of a net, from its newest snapshot (or its start); returns an exit status."""
    run = net.run
    solver = run.net_copy("solver")
    point = run.resume_point(set_aside=True)
    cmd = caffe_command(solver, device.gpus, movable_state(run, point[1] if point else start_state(run)))
    attempt, log_path = run.new_log()
    if not (point and point[0] >= net.max_iter):  # a failure after the final snapshot stays on record
        run.clear_failed()
    where = f"resuming at iteration {point[0]}" if point else "from init.caffemodel"
    prec = device.precision
    log.info("%s: attempt %d (%s, %s%s), %s; log %s", net.name, attempt, device,
             precision_.label(prec.precision, device.mode), ", deterministic" if prec.deterministic else "",
             where, shown(log_path))
    t0 = time.time()
    ended = run_caffe(net, lock, cmd, log_path, stop, progress_every, prec)
    outcome.release_reserve(run)   # room for the records below, should caffe have filled the disk
    try:
        run.append_attempt({
            "attempt": attempt, "host": socket.gethostname(), "pid": os.getpid(), "mode": device.mode,
            "gpu": device.gpu, **_batch_record(net, device), **precision_.record(prec), **record,
            "resumed_from": point[0] if point else None,
            "start": datetime.fromtimestamp(t0).isoformat(timespec="seconds"),
            "seconds": round(time.time() - t0, 1), "exit": ended.rc, "stopped": stop.why,
            **({"diverged_at": ended.diverged.iteration} if ended.diverged else {}),
            **cudnn_algos.record(log_path)})
        return _ended(plan, net, attempt, ended, log_path, stop, time.time() - t0)
    except OSError as exc:
        err = space_error(exc, "free space and run the same command again", where=run.attempts_file)
        if err is None:
            raise
        raise outcome.no_space(net, str(err), attempt) from None


def _ended(plan: Plan, net: Net, attempt: int, ended: Ended, log_path: Path, stop: Stop, seconds: float) -> int:
    """What the attempt that just ended leaves: DONE, a stop, or FAILED with its cause."""
    point = net.run.resume_point(set_aside=True)   # (a snapshot cut short by a full disk is set aside)
    at_end = point is not None and point[0] >= net.max_iter
    if ended.diverged is not None:
        return outcome.diverged(net, attempt, ended.rc, ended.diverged)
    # (a stop asked for as training ended is moot: caffe's log says which happened)
    if ended.rc == 0 and at_end and logs.ended_normally(log_path):
        check = outcome.finish(plan, net)["frozen_check"]
        log.info("%s: done: iteration %d in %s%s", net.name, net.max_iter, duration(seconds),
                 f"; frozen {integrity.against_text(check, plan, net)}" if check["layers"] else "")
        return Exit.OK
    if ended.asked or (ended.rc == 0 and stop.why) or ended.rc == -signal.SIGINT:
        log.info("%s: stopped with a snapshot at iteration %s; run again to resume",
                 net.name, point[0] if point else "-")
        return Exit.INTERRUPTED
    if ended.rc != 0 and outcome.disk_full(net.run):
        first = logs.first_error(log_path)
        raise outcome.no_space(net, (
            f"caffe {logs.describe_exit(ended.rc)}{f' ({first.text})' if first else ''} with the disk of "
            f"{shown(net.run.path)} full: no room for a snapshot; free space and run the same command again "
            f"(it resumes from {f'iteration {point[0]}' if point else 'the start'})"), attempt)
    return outcome.failed(net, attempt, ended.rc, log_path, at_end)


def _batch_record(net: Net, device: Device) -> dict[str, Any]:
    """Multi-GPU attempts record their GPUs and the batch each of them runs."""
    if len(device.gpus) < 2:
        return {}
    batch = net.run.net_copy("train")
    per_gpu = per_gpu_batch_of(batch)
    return {"gpus": list(device.gpus), "batch_per_gpu": per_gpu,
            "effective_batch": per_gpu * len(device.gpus) if per_gpu else None}


def _normal_end_recorded(run: RunDir) -> bool:
    """Whether the newest attempt ran caffe to its end: exit status 0 and its log closing with
    Solver::Solve's last line (a run stopped early closes with another)."""
    attempts = run.attempts()
    logs_ = run.log_files()
    if not attempts or not logs_:
        return False
    last = attempts[-1]
    return (run.attempt_log(last["attempt"]) == logs_[-1] and last.get("exit") == 0
            and logs.ended_normally(logs_[-1]))


# ---------------------------------------------------------------------------- one net

def _check_init(plan: Plan, net: Net, retrain: bool) -> None:
    """Init weights that are no longer what surgery wrote: FAILED (or, asked to, set aside)."""
    if not (net.run.init_weights.is_file() and net.run.surgery_record.is_file()):
        return   # surgery makes both next
    problem = integrity.init_problem(plan, net)
    if problem is None:
        return
    if retrain:
        log.info("%s: --retrain: %s; files set aside in %s", net.name, problem, shown(net.run.supersede()))
        return
    net.run.write_failed({"net": net.name, "error": problem, "time": outcome.now()})
    raise TransferError(f"{problem}\n  {integrity.init_fix(plan, net)}")


def _final_snapshot(plan: Plan, net: Net) -> int | None:
    """An exit status when the final snapshot is already there (done, or written by a failed
    attempt); None to run caffe."""
    point = net.run.resume_point(set_aside=True)
    if not (point and point[0] >= net.max_iter and net.run.final_weights.is_file()):
        return None
    if _normal_end_recorded(net.run):
        outcome.finish(plan, net)
        log.info("%s: final snapshot found: done", net.name)
        return Exit.OK
    failed = net.run.failed_record()
    if failed is not None:
        # Written by an attempt that then crashed: weights of a process that failed are no result.
        log.error("%s: the final snapshot was written by attempt %s, which then failed: %s\n    at %s\n"
                  "    fix the cause, then delete %s to train the net again", net.name,
                  failed.get("attempt", "?"), failed.get("error", "see its log"),
                  failed.get("where", failed.get("log", "?")), shown(net.run.snapshots_dir))
        return Exit.FAILED
    # How the attempt that wrote it ended is unknown (killed with this process): caffe resumes
    # from it, runs its final test and ends, which shows whether the net trains to its end.
    return None


def _train_locked(plan: Plan, net: Net, device: Device, lock: locks.Lock, stop: Stop,
                  seed: int | None, options: RunOptions) -> int:
    if lock.took_over:
        log.info("%s: %s", net.name, lock.took_over)
    integrity.claim(plan, net, options.retrain)   # before anything is written to the run directory
    if net.run.is_done():  # finished by the previous holder while we waited
        return Exit.OK
    _check_init(plan, net, options.retrain)
    outcome.keep_reserve(net.run)
    record = gpu_info.attempt_record(device.gpu or 0) if device.mode == "GPU" else {}  # refuses a CPU build
    write_run_files(plan, net, device.mode, max(1, len(device.gpus)), device.precision.deterministic)
    integrity.record(plan, net)
    make_init(plan, net, seed=seed)
    code = _final_snapshot(plan, net)
    if code is not None:
        return code
    if stop.why:
        log.info("%s: %s before caffe started", net.name, stop.why)
        return Exit.INTERRUPTED
    return _attempt(plan, net, device, lock, stop, record, options.progress_every)


def train_net(plan: Plan, net: Net, options: RunOptions | None = None, seed: int | None = None) -> int:
    """Train (or resume, or skip) one net; returns an exit status (errors.Exit). Checks its data,
    means, base, definition and the disk first (transfer/train/preflight.py), before anything is written."""
    options = options or RunOptions.of(plan)
    device = options.device(plan)
    if net.run.is_done():
        log.info("%s: already done", net.name)
        return Exit.OK
    base = plan.base_of(net)
    if base is not None and not base.run.is_done():
        raise TransferError(f"net '{net.name}' copies layers 1..{net.copied} from '{base.name}', "
                            f"which is not finished (train it first)")
    # Signals are caught from here on: a batch system's SIGTERM during the checks is a stop, not death.
    stop = Stop(time.time() + options.max_seconds if options.max_seconds else None)
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    stop.why = stop.why or stopsig.received()
    try:
        log.info("%s: preflight: %s", net.name, preflight.check(plan, [net], retrain=options.retrain))
        try:
            lock = net.run.acquire_lock()
        except locks.LockHeld as exc:
            log.info("%s: not started: %s", net.name, exc)
            return Exit.LOCKED
        with lock:
            try:
                return _train_locked(plan, net, device, lock, stop, seed, options)
            except outcome.DiskFull:
                raise
            except (OSError, NoSpaceError) as exc:   # a full disk in surgery, or writing the run's files
                err = exc if isinstance(exc, NoSpaceError) else space_error(exc, "free space and run the same "
                                                                            "command again")
                if err is None:
                    raise
                raise outcome.no_space(net, str(err)) from None
            finally:
                outcome.release_reserve(net.run)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------- CLI

def _cmd(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    return train_net(plan, plan.net(args.net), from_args(plan, args, gpus=args.gpu), seed=args.seed)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one net with caffe (resumes from its newest snapshot)",
                       description=f"Exit status: {Exit.OK} done, {Exit.FAILED} caffe failed (its first error "
                                   f"line is shown) or the net diverged, {Exit.ERROR} bad input (missing data, "
                                   f"labels beyond the net's classes, unfinished base, a run directory of another "
                                   f"definition, damaged init weights), {Exit.LOCKED} another process trains it, "
                                   f"{Exit.NO_SPACE} the disk is full (or too small for its snapshots), "
                                   f"{Exit.INTERRUPTED} stopped with a snapshot (run again to resume).")
    p.add_argument("net", help="net name (see `transfer plan show`)")
    p.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file (default paper)")
    p.add_argument("--gpu", type=parse_gpus, metavar="K", help="train on GPU K; K1,K2,..: on several GPUs at "
                   "once (caffe's data parallelism, the train batch split between them)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU (whatever the plan says)")
    p.add_argument("--max-seconds", type=argtypes.positive, metavar="S",
                   help="after S seconds, snapshot and exit 75 (e.g. inside a batch job's time limit)")
    p.add_argument("--seed", type=argtypes.seed, help="seed of the fresh layers, if surgery has not run yet")
    p.add_argument("--progress-every", type=argtypes.seconds, default=PROGRESS_EVERY_S, metavar="S",
                   help="seconds between progress lines while caffe trains (0: none; default %(default)s)")
    add_retrain_option(p)
    precision_.add_options(p)
    p.set_defaults(func=_cmd)
