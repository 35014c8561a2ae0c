"""Train one net with the real `caffe` binary: resumable, locked, checked (`transfer train`).

Every file it reads or writes is its run directory's (transfer/plan/rundir.py). The first attempt
starts from init.solverstate (iteration 0, init.caffemodel, zero momentum); later ones resume
from the newest readable snapshot. A stop (SIGINT/SIGTERM, --max-seconds) makes caffe snapshot and
the process exit Exit.INTERRUPTED (75): not finished, run again to resume. How it trains (device,
precision) is one RunOptions (transfer/train/options.py).
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
from ..caffe.caffemodel import identical_layers, read_model, read_state
from ..core import locks, stopsig
from ..core.console import stage
from ..core.errors import Exit, TransferError
from ..core.files import duration, shown
from ..plan.load import load_plan
from ..plan.model import LAYERS, Net, Plan
from ..plan.rundir import RunDir
from . import preflight
from .caffe_proc import Stop, caffe_command, run_caffe
from .options import PROGRESS_EVERY_S, Device, RunOptions, from_args, parse_gpus
from .runfiles import movable_state, per_gpu_batch_of, start_state, write_run_files
from .surgery import make_init

log = stage("train")


# ---------------------------------------------------------------------------- one net# ---------------------------------------------------------------------------- one net

def _tail(path: Path, n: int = 15) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def finish(net: Net) -> dict:
    """Check the frozen layers against the init weights and write DONE; returns its record."""
    run = net.run
    state = run.snapshot(net.max_iter, "solverstate")
    if not state.is_file() or read_state(state).iter != net.max_iter:
        raise TransferError(f"net '{net.name}': {shown(state)} is missing or not at iteration {net.max_iter}; "
                            "the final snapshot is incomplete (run again to redo the last iterations)")
    read_model(run.final_weights)  # a TransferError naming the file when it does not load
    same = identical_layers(run.init_weights, run.final_weights, LAYERS)
    frozen = LAYERS[:net.frozen]
    moved = [name for name in frozen if not same[name]]
    attempts = run.attempts()
    done = {
        "net": net.name, "final_iter": net.max_iter, "final_weights": shown(run.final_weights),
        "frozen_check": {"layers": frozen, "identical": not moved, "changed": moved},
        "unchanged_layers": [name for name in LAYERS if same[name]],
        "attempts": len(run.log_files()),  # killed ones left no record
        "started": attempts[0]["start"] if attempts else None,
        "finished": _now(),
        "train_seconds": round(sum(a.get("seconds", 0) for a in attempts), 1),
        "host": socket.gethostname(),
    }
    if moved:
        run.write_failed({**done, "error": "frozen layers changed"})
        raise TransferError(f"net '{net.name}': frozen layer(s) {moved} differ from {shown(run.init_weights)} "
                            f"after training; their lr/decay multipliers must be 0 in {net.files.train_net}")
    run.write_done(done)
    return done


def _attempt(net: Net, device: Device, lock: locks.Lock, stop: Stop, record: dict[str, Any],
             progress_every: float) -> int:
    """One caffe run of a net, from its newest snapshot (or its start); returns an exit status."""
    run = net.run
    solver = run.net_copy("solver")
    point = run.resume_point()
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
    rc, asked = run_caffe(net, lock, cmd, log_path, stop, progress_every, prec)
    seconds = time.time() - t0
    run.append_attempt({
        "attempt": attempt, "host": socket.gethostname(), "pid": os.getpid(), "mode": device.mode,
        "gpu": device.gpu, **_batch_record(net, device), **precision_.record(prec), **record,
        "resumed_from": point[0] if point else None,
        "start": datetime.fromtimestamp(t0).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1), "exit": rc, "stopped": stop.why, **cudnn_algos.record(log_path)})
    point = run.resume_point()
    at_end = point is not None and point[0] >= net.max_iter
    # (a stop asked for as training ended is moot: caffe's log says which happened)
    if rc == 0 and at_end and logs.ended_normally(log_path):
        frozen = finish(net)["frozen_check"]["layers"]
        log.info("%s: done: iteration %d in %s%s", net.name, net.max_iter, duration(seconds),
                 f"; frozen {', '.join(frozen)} bit-identical to init.caffemodel" if frozen else "")
        return Exit.OK
    if asked or (rc == 0 and stop.why) or rc == -signal.SIGINT:
        log.info("%s: stopped with a snapshot at iteration %s; run again to resume",
                 net.name, point[0] if point else "-")
        return Exit.INTERRUPTED
    return _failed(net, attempt, rc, log_path, at_end)


def _batch_record(net: Net, device: Device) -> dict[str, Any]:
    """Multi-GPU attempts record their GPUs and the batch each of them runs."""
    if len(device.gpus) < 2:
        return {}
    batch = net.run.net_copy("train")
    per_gpu = per_gpu_batch_of(batch)
    return {"gpus": list(device.gpus), "batch_per_gpu": per_gpu,
            "effective_batch": per_gpu * len(device.gpus) if per_gpu else None}


def _failed(net: Net, attempt: int, rc: int, log_path: Path, at_end: bool) -> int:
    """Record and show why an attempt failed: the first error line of caffe's log, not its stack."""
    first = logs.first_error(log_path)
    if first is not None:
        cause = f"{first.text}" + (f" [{first.where}]" if first.where else "")
    elif rc == 0:
        cause = ("exited 0, but its log does not end with 'Optimization Done.'" if at_end else
                 f"exited 0 without a readable snapshot at iteration {net.max_iter}")
    else:
        cause = "no error line in its log (killed from outside? out of memory?)"
    where = f"{shown(log_path)}:{first.line}" if first is not None else shown(log_path)
    error = f"caffe {logs.describe_exit(rc)}: {cause}"
    if at_end:
        error += " (after its final snapshot: the net is not done)"
    net.run.write_failed({"net": net.name, "attempt": attempt, "exit": rc, "log": shown(log_path),
                          "error": error, "where": where, "time": _now(), "tail": _tail(log_path)})
    log.error("%s: %s\n    at %s", net.name, error, where)
    return Exit.FAILED


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


def _train_locked(plan: Plan, net: Net, device: Device, lock: locks.Lock, stop: Stop,
                  seed: int | None, progress_every: float) -> int:
    if lock.took_over:
        log.info("%s: %s", net.name, lock.took_over)
    if net.run.is_done():  # finished by the previous holder while we waited
        return Exit.OK
    record = gpu_info.attempt_record(device.gpu or 0) if device.mode == "GPU" else {}  # refuses a CPU build
    write_run_files(plan, net, device.mode, max(1, len(device.gpus)), device.precision.deterministic)
    make_init(plan, net, seed=seed)
    point = net.run.resume_point()
    if point and point[0] >= net.max_iter and net.run.final_weights.is_file():
        if _normal_end_recorded(net.run):
            finish(net)
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
    if stop.why:
        log.info("%s: %s before caffe started", net.name, stop.why)
        return Exit.INTERRUPTED
    return _attempt(net, device, lock, stop, record, progress_every)


def train_net(plan: Plan, net: Net, options: RunOptions | None = None, seed: int | None = None) -> int:
    """Train (or resume, or skip) one net; returns an exit status (errors.Exit). Checks its data,
    means, base and the disk first (transfer/train/preflight.py), before anything is written."""
    options = options or RunOptions.of(plan)
    device = options.device(plan)
    progress_every = options.progress_every
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
        log.info("%s: preflight: %s", net.name, preflight.check(plan, [net]))
        try:
            lock = net.run.acquire_lock()
        except locks.LockHeld as exc:
            log.info("%s: not started: %s", net.name, exc)
            return Exit.LOCKED
        with lock:
            return _train_locked(plan, net, device, lock, stop, seed, progress_every)
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
                                   f"line is shown), {Exit.ERROR} bad input (missing data, labels beyond the "
                                   f"net's classes, unfinished base), {Exit.LOCKED} another process trains it, "
                                   f"{Exit.NO_SPACE} not enough disk for its snapshots, {Exit.INTERRUPTED} "
                                   f"stopped with a snapshot (run again to resume).")
    p.add_argument("net", help="net name (see `transfer plan show`)")
    p.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file (default paper)")
    p.add_argument("--gpu", type=parse_gpus, metavar="K", help="train on GPU K; K1,K2,..: on several GPUs at "
                   "once (caffe's data parallelism, the train batch split between them)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU (whatever the plan says)")
    p.add_argument("--max-seconds", type=float, metavar="S",
                   help="after S seconds, snapshot and exit 75 (e.g. inside a batch job's time limit)")
    p.add_argument("--seed", type=int, help="seed of the fresh layers, if surgery has not run yet")
    p.add_argument("--progress-every", type=float, default=PROGRESS_EVERY_S, metavar="S",
                   help="seconds between progress lines while caffe trains (0: none; default %(default)s)")
    precision_.add_options(p)
    p.set_defaults(func=_cmd)
