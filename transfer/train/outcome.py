"""How an attempt ended, written to the run directory: DONE (checked), FAILED with its cause, a
divergence, a full disk. Only `finish` writes DONE; every other end leaves nothing that looks finished.
"""
from __future__ import annotations

import shutil
import signal
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..caffe import logs
from ..caffe.caffemodel import identical_layers, layer_arrays, read_model, read_state
from ..caffe.logs import Divergence, first_divergence
from ..core.console import stage
from ..core.errors import Exit, NoSpaceError, TransferError
from ..core.files import shown
from ..plan.model import LAYERS, Net, Plan
from ..plan.rundir import RunDir
from . import integrity

log = stage("train")
RESERVE_BYTES = 1 << 20   # room for an attempt's records (attempts.jsonl, FAILED) once the disk is full


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def tail(path: Path, n: int = 15) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


# ---------------------------------------------------------------------------- done

def finish(plan: Plan, net: Net) -> dict:
    """Check the final snapshot, that the newest attempt did not diverge, and the frozen layers
    against their source of truth (integrity.frozen_check); write DONE; returns its record."""
    run = net.run
    state = run.snapshot(net.max_iter, "solverstate")
    if not state.is_file() or read_state(state).iter != net.max_iter:
        raise TransferError(f"net '{net.name}': {shown(state)} is missing or not at iteration {net.max_iter}; "
                            "the final snapshot is incomplete (run again to redo the last iterations)")
    read_model(run.final_weights)  # a TransferError naming the file when it does not load
    newest = run.log_files()[-1:]
    if newest and (div := first_divergence(newest[0])) is not None:
        raise TransferError(f"net '{net.name}': diverged: {div}: its final weights are no result")
    problem = integrity.init_problem(plan, net)
    if problem is not None:
        run.write_failed({"net": net.name, "error": problem, "time": now()})
        raise TransferError(f"{problem}\n  {integrity.init_fix(plan, net)}")
    check = integrity.frozen_check(plan, net, run.final_weights)
    same = identical_layers(run.init_weights, run.final_weights, LAYERS)
    attempts = run.attempts()
    done = {
        "net": net.name, "final_iter": net.max_iter, "final_weights": shown(run.final_weights),
        "frozen_check": check, "unchanged_layers": [name for name in LAYERS if same[name]],
        "attempts": len(run.log_files()),  # killed ones left no record
        "started": attempts[0]["start"] if attempts else None, "finished": now(),
        "train_seconds": round(sum(a.get("seconds", 0) for a in attempts), 1), "host": socket.gethostname(),
    }
    if check["changed"]:
        run.write_failed({**done, "error": "frozen layers changed"})
        raise TransferError(f"net '{net.name}': frozen layer(s) {check['changed']} differ from their source "
                            f"({', '.join(check['against'])}) after training; their lr/decay multipliers must "
                            f"be 0 in {net.files.train_net}")
    run.write_done(done)
    return done


# ---------------------------------------------------------------------------- failed

def failed(net: Net, attempt: int, rc: int, log_path: Path, at_end: bool) -> int:
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
                          "error": error, "where": where, "time": now(), "tail": tail(log_path)})
    log.error("%s: %s\n    at %s", net.name, error, where)
    return Exit.FAILED


# ---------------------------------------------------------------------------- diverged

def _finite(model: Path) -> bool:
    return all(np.isfinite(a).all() for arrays in layer_arrays(model).values() for a in arrays)


def last_finite(run: RunDir, div: Divergence) -> tuple[int, Path] | None:
    """Set aside (`*.diverged`) every snapshot from the iteration whose loss was not finite on (caffe
    snapshots iteration N before it logs N's loss), and any newer one whose weights are not finite;
    returns the snapshot a rerun resumes from, None for init.caffemodel."""
    for it, _ in run.snapshots():
        if div.iteration is None or it >= div.iteration:
            run.set_aside_snapshot(it, "diverged")
    while (point := run.resume_point(set_aside=True)) is not None and not _finite(point[1].with_suffix(".caffemodel")):
        run.set_aside_snapshot(point[0], "diverged")
    return point


def diverged(net: Net, attempt: int, rc: int, div: Divergence) -> int:
    """A net whose loss stopped being finite: FAILED, with the iteration and the last finite snapshot."""
    point = last_finite(net.run, div)
    resume = (f"a rerun resumes from {shown(point[1].with_suffix('.caffemodel'))}" if point else
              "no snapshot before it: a rerun starts from init.caffemodel")
    how = "caffe stopped at once" if rc == -signal.SIGKILL else f"caffe {logs.describe_exit(rc)}"
    error = (f"diverged: loss {div.value} at iteration {div.iteration} ({how}); {resume}; it needs a lower "
             f"base_lr (now {net.solver.base_lr:g}) or a look at its data to train")
    net.run.write_failed({"net": net.name, "attempt": attempt, "exit": rc, "log": div.path, "error": error,
                          "where": f"{shown(div.path)}:{div.line}", "time": now(), "tail": tail(Path(div.path)),
                          "diverged": {"iteration": div.iteration, "value": div.value,
                                       "last_finite_snapshot": point[0] if point else None}})
    log.error("%s: %s\n    at %s:%d", net.name, error, shown(div.path), div.line)
    return Exit.FAILED


# ---------------------------------------------------------------------------- a full disk

def disk_full(run: RunDir) -> bool:
    """Whether the disk of the run directory cannot hold another snapshot (as big as the init
    weights, twice: .caffemodel and .solverstate): what a caffe failure on a full disk leaves."""
    one = 2 * run.init_weights.stat().st_size if run.init_weights.is_file() else RESERVE_BYTES
    return shutil.disk_usage(run.path).free < one


class DiskFull(NoSpaceError):
    """A full disk, already recorded in the net's FAILED file."""


def no_space(net: Net, error: str, attempt: int | None = None) -> DiskFull:
    """Record a full disk as the net's failure (as far as the disk lets us: the reserve was freed
    for it) and return the error to raise (exit 74)."""
    record: dict[str, Any] = {"net": net.name, "error": error, "no_space": True, "time": now()}
    if attempt is not None:
        record["attempt"] = attempt
    release_reserve(net.run)
    try:
        net.run.write_failed(record)
    except OSError:
        pass   # the message and exit status still say it
    return DiskFull(error)


def keep_reserve(run: RunDir) -> None:
    """A little disk held while caffe trains, freed for the attempt's records if the disk fills."""
    try:
        with open(run.space_reserve, "wb") as fh:
            fh.truncate(0)
            fh.write(b"\0" * RESERVE_BYTES)
    except OSError:
        run.space_reserve.unlink(missing_ok=True)   # already full: the write that follows will say so


def release_reserve(run: RunDir) -> None:
    run.space_reserve.unlink(missing_ok=True)
