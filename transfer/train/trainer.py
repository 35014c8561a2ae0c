"""Train one net with the real `caffe` binary: resumable, locked, checked.

Every file it reads or writes is its run directory's (transfer/plan/rundir.py). The first attempt
starts from init.solverstate (iteration 0, init.caffemodel, zero momentum); later ones resume
from the newest readable snapshot. SIGINT/SIGTERM (and --max-seconds) make caffe stop at the
end of its iteration and snapshot (`-sigint_effect stop`: caffe saves a snapshot when it stops
early; `-sigint_effect snapshot` would save one and go on training); the process then exits
Exit.INTERRUPTED (75): not finished, run again to resume.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import text_format

from ..core import argtypes, locks, stopsig
from ..caffe import logs
from . import preflight
from ..caffe import precision as precision_
from ..caffe.env import caffe_binary, caffe_pb2
from ..caffe.caffemodel import identical_layers, read_model, read_state
from ..core.console import stage
from ..core.errors import Exit, TransferError
from ..core.files import atomic_write, duration, repo_path, shown
from ..plan.model import LAYERS, Net, Plan, load_plan
from ..caffe import gpu as gpu_info
from ..plan.rundir import RunDir
from ..plan.spec import PrecisionSpec
from .status import training_progress
from .surgery import make_init

log = stage("train")
PROGRESS_EVERY_S = 60.0


# ---------------------------------------------------------------------------- run files

def _need_file(path: Path, plan: Plan) -> Path:
    if not path.is_file():
        raise TransferError(f"{shown(path)} does not exist: run `transfer nets write --plan {plan.name}`")
    return path


def write_run_files(plan: Plan, net: Net, mode: str, gpus: int = 1, deterministic: bool = False) -> Path:
    """The plan's train/test/solver prototxt copied into the run dir, rewritten on every attempt:
    data and means by absolute path, the run's own files relative to it (caffe runs inside it), so
    a moved runs folder trains from its own files. On `gpus` GPUs the train batch is split
    between them (per_gpu_batch), so the effective batch stays the plan's. `deterministic`: the
    solver gets a fixed random_seed (the net's), so dropout masks and crops repeat in a rerun."""
    pb = caffe_pb2()
    batch = per_gpu_batch(plan.model.train_batch, gpus)
    run = net.run
    texts = {}
    for kind, rel in (("train", net.files.train_net), ("test", net.files.test_net)):
        proto = text_format.Merge(_need_file(repo_path(rel), plan).read_text(), pb.NetParameter())
        for layer in proto.layer:
            if layer.HasField("data_param") and layer.data_param.source:
                layer.data_param.source = str(repo_path(layer.data_param.source))
            if layer.HasField("transform_param") and layer.transform_param.mean_file:
                layer.transform_param.mean_file = str(repo_path(layer.transform_param.mean_file))
            if kind == "train" and layer.HasField("data_param") and gpus > 1:
                layer.data_param.batch_size = batch
        texts[kind] = text_format.MessageToString(proto)
    solver = text_format.Merge(_need_file(repo_path(net.files.solver), plan).read_text(), pb.SolverParameter())
    solver.train_net = _in_run(run, run.net_copy("train"))
    del solver.test_net[:]
    solver.test_net.append(_in_run(run, run.net_copy("test")))
    solver.snapshot_prefix = _in_run(run, run.snapshot_prefix)
    solver.solver_mode = pb.SolverParameter.GPU if mode == "GPU" else pb.SolverParameter.CPU
    if deterministic:   # otherwise caffe seeds from the clock, as the paper's runs did
        solver.random_seed = zlib.crc32(net.name.encode()) & 0x7FFFFFFF
    texts["solver"] = text_format.MessageToString(solver)
    for kind, text in texts.items():
        path = run.net_copy(kind)
        if not path.is_file() or path.read_text() != text:
            atomic_write(path, text)
    run.snapshots_dir.mkdir(exist_ok=True)
    run.logs_dir.mkdir(exist_ok=True)
    return run.net_copy("solver")


def per_gpu_batch(batch: int, gpus: int) -> int:
    """Caffe's multi-GPU training (P2PSync) runs the net's whole batch on every GPU and sums the
    gradients: the effective batch is batch_size x GPUs. The paper's effective batch (256) is kept
    by giving each GPU batch / gpus images."""
    if gpus < 1 or batch % gpus:
        raise TransferError(f"--gpu: a train batch of {batch} cannot be split evenly over {gpus} GPUs "
                            f"(use a number of GPUs that divides {batch})")
    return batch // gpus


def _in_run(run: RunDir, path: Path) -> str:
    return os.path.relpath(path, run.path)


def movable_state(run: RunDir, state: Path) -> Path:
    """Point a solverstate at the weights beside it, relative to the run directory.

    Caffe stores in a snapshot's .solverstate the path of the .caffemodel it wrote (`learned_net`)
    and loads that path on resume: an absolute one, from before a move of the runs folder, would
    fail, or silently load the old folder's weights while it still exists."""
    st = read_state(state)
    want = _in_run(run, state.with_suffix(".caffemodel"))
    if st.learned_net != want:
        st.learned_net = want
        atomic_write(state, st.SerializeToString())
    return state


def start_state(run: RunDir) -> Path:
    """The run's init.solverstate: iteration 0, weights init.caffemodel, zero momentum history.

    Training starts with `caffe train --snapshot` from this state rather than with `--weights`:
    a fresh solver is exactly this state (BVLC's `--weights` copies the same layers into it), and
    some Caffe trees' `caffe train` ignore `--weights` silently (brocolli-caffe 9.0.2 does).
    """
    path = run.init_state
    if path.is_file() and path.stat().st_mtime >= run.init_weights.stat().st_mtime:
        return path
    state = caffe_pb2().SolverState(iter=0, current_step=0, learned_net=_in_run(run, run.init_weights))
    for layer in read_model(run.init_weights).layer:   # the solver's history: one blob per parameter
        for blob in layer.blobs:
            h = state.history.add()
            h.shape.CopyFrom(blob.shape)
            h.data.extend(np.zeros(len(blob.data), dtype=np.float32))
    atomic_write(path, state.SerializeToString())
    return path


# ---------------------------------------------------------------------------- caffe

_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """In caffe, before exec: ignore SIGTERM (a batch system's SIGTERM reaches every process of
    a job; we answer it by sending SIGINT, which caffe turns into a snapshot) and die with us
    if we are killed (-9), so no orphan keeps training a net whose lock is gone."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux


class _Stop:
    """Signal flag: handlers only record; the wait loop acts."""

    def __init__(self, deadline: float | None) -> None:
        self.why: str | None = stopsig.received()  # (while the command was starting)
        self.deadline = deadline

    def __call__(self, signum: int, _frame: Any) -> None:
        self.why = self.why or signal.Signals(signum).name

    def check_deadline(self) -> None:
        if self.deadline is not None and time.time() >= self.deadline and not self.why:
            self.why = "time limit (--max-seconds)"


def caffe_command(solver: Path, gpus: tuple[int, ...] | int | None, state: Path) -> list[str]:
    cmd = [str(caffe_binary()), "train", f"-solver={solver}", f"-snapshot={state}",
           "-sigint_effect=stop", "-sighup_effect=snapshot"]
    if isinstance(gpus, int):
        gpus = (gpus,)
    if gpus:
        cmd.append("-gpu=" + ",".join(str(g) for g in gpus))  # several: caffe's P2PSync data parallelism
    return cmd


def _run_caffe(net: Net, lock: locks.Lock, cmd: list[str], log_path: Path, stop: _Stop,
               progress_every: float = 0, precision: PrecisionSpec = PrecisionSpec()) -> tuple[int, bool]:
    """Run caffe until it exits; returns (exit status, whether we asked it to stop). Every
    `progress_every` seconds (0: never) a progress line: iteration, loss, accuracy, speed, time left.
    `precision` reaches caffe as environment variables (transfer/caffe/precision.py)."""
    env = precision_.caffe_environ(precision, dict(os.environ, GLOG_logtostderr="1"))
    env.pop("GLOG_minloglevel", None)  # the log is the record: keep caffe's INFO lines
    shown_env = " ".join(f"{k}={env[k]}" for k in (precision_.TF32_OFF, precision_.CAFFE_TF32,
                                                    precision_.CAFFE_DETERMINISTIC) if k in env)
    with open(log_path, "ab") as fh:
        fh.write(f"# transfer train {net.name}: {shown_env} {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=net.run.path, env=env, preexec_fn=_child_setup)
    asked = False
    next_progress = time.time() + progress_every
    try:
        while proc.poll() is None:
            if progress_every and time.time() >= next_progress:
                log.info("%s: %s", net.name, training_progress(net))
                next_progress = time.time() + progress_every
            stop.check_deadline()
            if stop.why and not asked:
                log.info("%s: %s: asking caffe (pid %d) to snapshot and stop", net.name, stop.why, proc.pid)
                proc.send_signal(signal.SIGINT)
                asked = True
            lock.heartbeat()
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if proc.poll() is None:  # we are leaving by an exception: take caffe down with us
            proc.kill()
            proc.wait()
    return proc.returncode, asked


# ---------------------------------------------------------------------------- one net

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


@dataclass(frozen=True)
class Device:
    """Where caffe trains: mode CPU or GPU, the GPUs' numbers (several: one net on all of them), and
    how it computes."""

    mode: str
    gpus: tuple[int, ...] = ()
    precision: PrecisionSpec = PrecisionSpec()

    @property
    def gpu(self) -> int | None:
        return self.gpus[0] if self.gpus else None

    def __str__(self) -> str:
        return self.mode if not self.gpus else f"{self.mode} {','.join(map(str, self.gpus))}"


def parse_gpus(value: str) -> tuple[int, ...]:
    """`--gpu 0` or `--gpu 0,1`: distinct GPU numbers."""
    try:
        gpus = tuple(int(g) for g in value.split(","))
    except ValueError:
        gpus = ()
    if not gpus or min(gpus) < 0 or len(set(gpus)) != len(gpus):
        raise argparse.ArgumentTypeError(f"--gpu {value!r}: expected a GPU number or distinct numbers "
                                         "separated by commas, e.g. 0 or 0,1")
    return gpus


def choose_device(plan: Plan, gpu: int | tuple[int, ...] | None, cpu: bool, precision: str | None = None,
                  deterministic: bool | None = None) -> Device:
    """The device, and the precision (the plan's unless overridden) it really computes with."""
    gpus = (gpu,) if isinstance(gpu, int) else tuple(gpu or ())
    if cpu and gpus:
        raise TransferError("give --gpu K or --cpu, not both")
    spec = precision_.choose(plan.precision, precision, deterministic)
    if cpu or (not gpus and plan.solver_mode == "CPU"):
        if spec.precision != "fp32":
            log.info("precision %s applies to GPUs only: the CPU computes in fp32", spec.precision)
        return Device("CPU", (), precision_.effective(spec, "CPU"))
    if gpus:
        per_gpu_batch(plan.model.train_batch, len(gpus))  # refused before anything is written
    return Device("GPU", gpus, spec)  # no --gpu: caffe takes the solver's device (0)


def _attempt(net: Net, device: Device, lock: locks.Lock, stop: _Stop, record: dict[str, Any],
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
    rc, asked = _run_caffe(net, lock, cmd, log_path, stop, progress_every, prec)
    seconds = time.time() - t0
    run.append_attempt({
        "attempt": attempt, "host": socket.gethostname(), "pid": os.getpid(), "mode": device.mode,
        "gpu": device.gpu, **_batch_record(net, device), **precision_.record(prec), **record,
        "resumed_from": point[0] if point else None,
        "start": datetime.fromtimestamp(t0).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1), "exit": rc, "stopped": stop.why})
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


def per_gpu_batch_of(train_prototxt: Path) -> int | None:
    """The batch size of a run's train net copy (its TRAIN data layer)."""
    proto = text_format.Merge(train_prototxt.read_text(), caffe_pb2().NetParameter())
    return next((l.data_param.batch_size for l in proto.layer if l.HasField("data_param")), None)


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


def _train_locked(plan: Plan, net: Net, device: Device, lock: locks.Lock, stop: _Stop,
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


def train_net(plan: Plan, net: Net, gpu: int | tuple[int, ...] | None = None, cpu: bool = False,
              max_seconds: float | None = None, seed: int | None = None,
              progress_every: float = PROGRESS_EVERY_S, precision: str | None = None,
              deterministic: bool | None = None) -> int:
    """Train (or resume, or skip) one net; returns an exit status (errors.Exit). Checks its data,
    means, base and the disk first (transfer/train/preflight.py), before anything is written.
    `precision`/`deterministic` override the plan's (None: the plan's)."""
    device = choose_device(plan, gpu, cpu, precision, deterministic)
    if net.run.is_done():
        log.info("%s: already done", net.name)
        return Exit.OK
    base = plan.base_of(net)
    if base is not None and not base.run.is_done():
        raise TransferError(f"net '{net.name}' copies layers 1..{net.copied} from '{base.name}', "
                            f"which is not finished (train it first)")
    # Signals are caught from here on: a batch system's SIGTERM during the checks is a stop, not death.
    stop = _Stop(time.time() + max_seconds if max_seconds else None)
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
    return train_net(plan, plan.net(args.net), gpu=args.gpu, cpu=args.cpu, max_seconds=args.max_seconds,
                     seed=args.seed, progress_every=args.progress_every,
                     precision=args.precision, deterministic=args.deterministic)


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
    p.add_argument("--max-seconds", type=argtypes.positive, metavar="S",
                   help="after S seconds, snapshot and exit 75 (e.g. inside a batch job's time limit)")
    p.add_argument("--seed", type=argtypes.seed, help="seed of the fresh layers, if surgery has not run yet")
    p.add_argument("--progress-every", type=argtypes.seconds, default=PROGRESS_EVERY_S, metavar="S",
                   help="seconds between progress lines while caffe trains (0: none; default %(default)s)")
    precision_.add_options(p)
    p.set_defaults(func=_cmd)
