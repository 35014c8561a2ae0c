"""Train one net with the real `caffe` binary: resumable, locked, checked.

Run directory (`net.run_dir`):
  init.caffemodel, surgery.json        starting weights (transfer/surgery.py)
  train/test/solver.prototxt           the plan's files with every path made absolute
  logs/attempt-NNN.log                 caffe's glog output, one file per attempt
  attempts.jsonl                       one line per attempt: host, times, exit status, resumed from
  snapshots/<net>_iter_<N>.caffemodel|.solverstate
  DONE                                 json, only once the snapshot at max_iter exists and the
                                       frozen layers were checked bit-identical to init.caffemodel
  FAILED                               json, when the last attempt failed (removed by the next one)
  lock                                 transfer/locks.py

The first attempt starts from init.solverstate (iteration 0, init.caffemodel, zero momentum);
later ones resume from the newest readable snapshot. SIGINT/SIGTERM (and --max-seconds)
make caffe stop at the end of its iteration and snapshot (`-sigint_effect stop`: caffe saves
a snapshot when it stops early; `-sigint_effect snapshot` would save one and go on training);
the process then exits 75 (EX_TEMPFAIL): not finished, run again to resume.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import text_format

from . import locks
from .caffe_env import caffe_binary, caffe_pb2
from .errors import TransferError
from .plan import LAYERS, Net, Plan, load_plan
from .files import atomic_write, read_jsonl
from . import gpu as gpu_info  # noqa: I001
from .surgery import INIT, final_weights, identical_layers, make_init, read_model, run_dir, shown

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_LOCKED = 73        # EX_CANTCREAT: another live process trains this net
EXIT_INTERRUPTED = 75   # EX_TEMPFAIL: stopped with a snapshot; run again to resume

_SNAP = re.compile(r"_iter_(\d+)\.solverstate$")


def _say(net: Net, msg: str) -> None:
    print(f"[train {net.name}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- run directory

def lock_path(plan: Plan, net: Net) -> Path:
    return run_dir(plan, net) / "lock"


def is_done(plan: Plan, net: Net) -> bool:
    """Finished: DONE written and the final weights there."""
    return (run_dir(plan, net) / "DONE").is_file() and final_weights(plan, net).is_file()


def snapshots(plan: Plan, net: Net) -> list[tuple[int, Path]]:
    """(iteration, .solverstate) pairs, newest first."""
    d = run_dir(plan, net) / "snapshots"
    found = []
    if d.is_dir():
        for p in d.iterdir():
            m = _SNAP.search(p.name)
            if m and p.name.startswith(f"{net.name}_iter_"):
                found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def resume_point(plan: Plan, net: Net) -> tuple[int, Path] | None:
    """The newest snapshot caffe can restore: both files there and parseable.

    Caffe writes the .caffemodel, then the .solverstate, neither atomically: a kill during
    a snapshot leaves a truncated pair, skipped here in favour of the one before.
    """
    pb = caffe_pb2()
    for it, state in snapshots(plan, net):
        model = state.with_suffix(".caffemodel")
        try:
            st = pb.SolverState()
            st.ParseFromString(state.read_bytes())
            if st.iter != it or not model.is_file():
                raise ValueError("incomplete")
            read_model(model)
        except Exception as exc:  # noqa: BLE001 - any unreadable snapshot is skipped alike
            _say(net, f"skipping unreadable snapshot {state.name} ({exc})")
            continue
        return it, state
    return None


def write_run_files(plan: Plan, net: Net, mode: str) -> Path:
    """The plan's train/test/solver prototxt copied into the run dir with absolute paths."""
    pb = caffe_pb2()
    out = run_dir(plan, net)
    texts = {}
    for kind, rel in (("train", net.train_net), ("test", net.test_net)):
        src = plan.abspath(rel)
        if not src.is_file():
            raise TransferError(f"{shown(src)} does not exist: run `transfer nets write --plan {plan.name}`")
        proto = pb.NetParameter()
        text_format.Merge(src.read_text(), proto)
        for layer in proto.layer:
            if layer.HasField("data_param") and layer.data_param.source:
                layer.data_param.source = str(plan.abspath(layer.data_param.source))
            if layer.HasField("transform_param") and layer.transform_param.mean_file:
                layer.transform_param.mean_file = str(plan.abspath(layer.transform_param.mean_file))
        texts[kind] = text_format.MessageToString(proto)
    src = plan.abspath(net.solver_file)
    if not src.is_file():
        raise TransferError(f"{shown(src)} does not exist: run `transfer nets write --plan {plan.name}`")
    solver = pb.SolverParameter()
    text_format.Merge(src.read_text(), solver)
    solver.train_net = str(out / "train.prototxt")
    del solver.test_net[:]
    solver.test_net.append(str(out / "test.prototxt"))
    solver.snapshot_prefix = str(out / "snapshots" / net.name)
    solver.solver_mode = pb.SolverParameter.GPU if mode == "GPU" else pb.SolverParameter.CPU
    texts["solver"] = text_format.MessageToString(solver)
    for kind, text in texts.items():
        path = out / f"{kind}.prototxt"
        if not path.is_file() or path.read_text() != text:
            atomic_write(path, text)
    (out / "snapshots").mkdir(exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    return out / "solver.prototxt"


def start_state(plan: Plan, net: Net) -> Path:
    """`<run_dir>/init.solverstate`: iteration 0, weights init.caffemodel, zero momentum history.

    Training starts with `caffe train --snapshot` from this state rather than with `--weights`:
    a fresh solver is exactly this state (BVLC's `--weights` copies the same layers into it), and
    some Caffe trees' `caffe train` ignore `--weights` silently (brocolli-caffe 9.0.2 does).
    """
    out = run_dir(plan, net)
    path = out / "init.solverstate"
    if path.is_file() and path.stat().st_mtime >= (out / INIT).stat().st_mtime:
        return path
    pb = caffe_pb2()
    state = pb.SolverState(iter=0, current_step=0, learned_net=str(out / INIT))
    for layer in read_model(out / INIT).layer:   # the solver's history: one blob per parameter, in order
        for blob in layer.blobs:
            h = state.history.add()
            h.shape.CopyFrom(blob.shape)
            h.data.extend(np.zeros(len(blob.data), dtype=np.float32))
    atomic_write(path, state.SerializeToString())
    return path


def _new_log(out: Path) -> tuple[int, Path]:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    n = 1 + max((int(m.group(1)) for p in logs.iterdir()
                 if (m := re.fullmatch(r"attempt-(\d+)\.log", p.name))), default=0)
    while True:  # O_EXCL: a number is never reused, even by a racing process
        path = logs / f"attempt-{n:03d}.log"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return n, path
        except FileExistsError:
            n += 1


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


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

    def __init__(self) -> None:
        self.why: str | None = None

    def __call__(self, signum: int, _frame: Any) -> None:
        self.why = self.why or signal.Signals(signum).name


def caffe_command(solver: Path, gpu: int | None, state: Path) -> list[str]:
    cmd = [str(caffe_binary()), "train", f"-solver={solver}", f"-snapshot={state}",
           "-sigint_effect=stop", "-sighup_effect=snapshot"]
    if gpu is not None:
        cmd.append(f"-gpu={gpu}")
    return cmd


def _run_caffe(net: Net, lock: locks.Lock, cmd: list[str], log: Path, cwd: Path, stop: _Stop,
               deadline: float | None) -> tuple[int, bool]:
    """Run caffe until it exits; returns (exit status, whether we asked it to stop)."""
    env = dict(os.environ, GLOG_logtostderr="1")
    env.pop("GLOG_minloglevel", None)  # the log is the record: keep caffe's INFO lines
    with open(log, "ab") as fh:
        fh.write(f"# transfer train {net.name}: {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, env=env, preexec_fn=_child_setup)
    asked = False
    try:
        while proc.poll() is None:
            if deadline is not None and time.time() >= deadline and not stop.why:
                stop.why = "time limit (--max-seconds)"
            if stop.why and not asked:
                _say(net, f"{stop.why}: asking caffe (pid {proc.pid}) to snapshot and stop")
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


def _finish(plan: Plan, net: Net, out: Path) -> dict:
    """Check the frozen layers and write DONE."""
    final = final_weights(plan, net)
    same = identical_layers(out / INIT, final, LAYERS)
    frozen = LAYERS[:net.frozen]
    moved = [name for name in frozen if not same[name]]
    check = {"layers": frozen, "identical": not moved, "changed": moved}
    attempts = read_jsonl(out / "attempts.jsonl")
    done = {
        "net": net.name, "final_iter": net.max_iter, "final_weights": shown(final),
        "frozen_check": check,
        "unchanged_layers": [name for name in LAYERS if same[name]],
        "attempts": len(list((out / "logs").glob("attempt-*.log"))),  # killed ones left no record
        "started": attempts[0]["start"] if attempts else None,
        "finished": datetime.now().isoformat(timespec="seconds"),
        "train_seconds": round(sum(a.get("seconds", 0) for a in attempts), 1),
        "host": socket.gethostname(),
    }
    if moved:
        atomic_write(out / "FAILED", json.dumps({**done, "error": "frozen layers changed"}, indent=1))
        raise TransferError(f"net '{net.name}': frozen layer(s) {moved} differ from {INIT} after "
                            f"training; their lr/decay multipliers must be 0 in {net.train_net}")
    atomic_write(out / "DONE", json.dumps(done, indent=1) + "\n")
    (out / "FAILED").unlink(missing_ok=True)
    return done


def train_net(plan: Plan, net: Net, gpu: int | None = None, cpu: bool = False,
              max_seconds: float | None = None, seed: int | None = None) -> int:
    """Train (or resume, or skip) one net; returns an exit status (EXIT_*)."""
    started = time.time()
    deadline = started + max_seconds if max_seconds else None
    if is_done(plan, net):
        _say(net, "already done")
        return EXIT_OK
    if net.copied:
        base = plan.net(net.base)
        if not is_done(plan, base):
            raise TransferError(f"net '{net.name}' copies layers 1..{net.copied} from '{base.name}', "
                                f"which is not finished (train it first)")
    mode = "CPU" if cpu else ("GPU" if gpu is not None else plan.config.get("solver_mode", "GPU"))
    out = run_dir(plan, net)
    stop = _Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            lock = locks.acquire(lock_path(plan, net))
        except locks.LockHeld as exc:
            _say(net, f"not started: {exc}")
            return EXIT_LOCKED
        with lock:
            if lock.took_over:
                _say(net, lock.took_over)
            if is_done(plan, net):  # finished by the previous holder while we waited
                return EXIT_OK
            device = gpu_info.attempt_record(gpu or 0) if mode == "GPU" else {}  # device, driver, CUDA
            solver = write_run_files(plan, net, mode)
            make_init(plan, net, seed=seed)
            point = resume_point(plan, net)
            if point and point[0] >= net.max_iter and final_weights(plan, net).is_file():
                _finish(plan, net, out)
                _say(net, "final snapshot found: done")
                return EXIT_OK
            if stop.why:
                _say(net, f"{stop.why} before caffe started")
                return EXIT_INTERRUPTED
            cmd = caffe_command(solver, gpu if mode == "GPU" else None,
                                point[1] if point else start_state(plan, net))
            attempt, log = _new_log(out)
            (out / "FAILED").unlink(missing_ok=True)
            where = f"resuming at iteration {point[0]}" if point else "from init.caffemodel"
            _say(net, f"attempt {attempt} ({mode}{'' if gpu is None or mode == 'CPU' else f' {gpu}'}), "
                      f"{where}; log {shown(log)}")
            t0 = time.time()
            rc, asked = _run_caffe(net, lock, cmd, log, out, stop, deadline)
            seconds = time.time() - t0
            _append_jsonl(out / "attempts.jsonl", {
                "attempt": attempt, "host": socket.gethostname(), "pid": os.getpid(), "mode": mode,
                "gpu": gpu, **device, "resumed_from": point[0] if point else None,
                "start": datetime.fromtimestamp(t0).isoformat(timespec="seconds"),
                "seconds": round(seconds, 1), "exit": rc, "stopped": stop.why})
            if rc == 0 and final_weights(plan, net).is_file():
                done = _finish(plan, net, out)
                frozen = done["frozen_check"]["layers"]
                _say(net, f"done: iteration {net.max_iter} in {seconds:.0f} s" +
                     (f"; frozen {', '.join(frozen)} bit-identical to {INIT}" if frozen else ""))
                return EXIT_OK
            if asked or (rc == 0 and stop.why) or rc == -signal.SIGINT:
                newest = resume_point(plan, net)
                _say(net, f"stopped with a snapshot at iteration {newest[0] if newest else '-'}; "
                          f"run again to resume")
                return EXIT_INTERRUPTED
            atomic_write(out / "FAILED", json.dumps({
                "net": net.name, "attempt": attempt, "exit": rc, "log": shown(log),
                "time": datetime.now().isoformat(timespec="seconds"), "tail": _tail(log)}, indent=1))
            _say(net, f"caffe failed (exit {rc}); last lines of {shown(log)}:")
            for line in _tail(log):
                print(f"    {line}", file=sys.stderr)
            return EXIT_FAILED
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------- state, for status/report

STATES = ("pending", "running", "done", "failed", "blocked")
_GLOG = re.compile(r"^[IWEF](\d{4})?(\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d+)")
_ITER_LINE = re.compile(r"\] Iteration (\d+)\b")


@dataclass
class NetState:
    name: str
    state: str                          # one of STATES
    iteration: int = 0
    max_iter: int = 0
    val_accuracy: float | None = None   # latest validation accuracy
    iter_per_s: float | None = None     # speed of the latest attempt
    seconds_left: float | None = None   # at that speed
    attempts: int = 0
    holder: str | None = None           # host:pid of a running net's lock
    detail: list[str] = field(default_factory=list)   # why blocked / last log lines of a failure

    def to_json(self) -> dict:
        return asdict(self)


def _speed(log: Path) -> tuple[int | None, float | None]:
    """(latest iteration, iterations per second) from one attempt's glog timestamps."""
    first = last = None
    year = datetime.now().year
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None, None
    for line in lines:
        mi, mt = _ITER_LINE.search(line), _GLOG.match(line)
        if not (mi and mt):
            continue
        y, mo, d, h, mi_, s, frac = mt.groups()
        try:
            t = datetime(int(y or year), int(mo), int(d), int(h), int(mi_), int(s),
                         int(frac[:6].ljust(6, "0"))).timestamp()
        except ValueError:
            continue
        point = (int(mi.group(1)), t)
        first = first or point
        last = point
    if not last:
        return None, None
    if first and last[1] > first[1] and last[0] > first[0]:
        return last[0], (last[0] - first[0]) / (last[1] - first[1])
    return last[0], None


def net_state(plan: Plan, net: Net) -> NetState:
    """Where a net stands, from its run directory alone (no process needed)."""
    from . import logs  # noqa: PLC0415 - only status needs the log reader

    out = run_dir(plan, net)
    st = NetState(name=net.name, state="pending", max_iter=net.max_iter)
    files = sorted((out / "logs").glob("attempt-*.log")) if (out / "logs").is_dir() else []
    st.attempts = len(files)
    if files:
        try:
            nl = logs.read_logs(files)
            if nl.val_accuracy:
                st.val_accuracy = nl.val_accuracy[max(nl.val_accuracy)]
        except TransferError:
            pass
        it, speed = _speed(files[-1])
        st.iteration, st.iter_per_s = it or 0, speed
    point = snapshots(plan, net)
    if point:
        st.iteration = max(st.iteration, point[0][0])
    if is_done(plan, net):
        st.state, st.iteration, st.iter_per_s = "done", net.max_iter, None
        return st
    info = locks.read(lock_path(plan, net))
    if info is not None and locks.stale_reason(info) is None:
        st.state, st.holder = "running", f"{info.get('host')}:{info.get('pid')}"
        if st.iter_per_s:
            st.seconds_left = (net.max_iter - st.iteration) / st.iter_per_s
        return st
    st.iter_per_s = None
    failed = out / "FAILED"
    if failed.is_file():
        st.state = "failed"
        try:
            rec = json.loads(failed.read_text())
            st.detail = [rec.get("error") or f"caffe exit {rec.get('exit')}"] + list(rec.get("tail", []))
        except ValueError:
            st.detail = _tail(files[-1]) if files else []
        return st
    if net.copied and not is_done(plan, plan.net(net.base)):
        st.state, st.detail = "blocked", [f"waits for {net.base}"]
    return st


# ---------------------------------------------------------------------------- CLI

def _cmd(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    net = plan.net(args.net)
    if args.cpu and args.gpu is not None:
        raise TransferError("give --gpu K or --cpu, not both")
    return train_net(plan, net, gpu=args.gpu, cpu=args.cpu, max_seconds=args.max_seconds, seed=args.seed)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one net with caffe (resumes from its newest snapshot)",
                       description=f"Exit status: 0 done, {EXIT_FAILED} caffe failed, 2 error, "
                                   f"{EXIT_LOCKED} another process trains it, {EXIT_INTERRUPTED} "
                                   f"stopped with a snapshot (run again to resume).")
    p.add_argument("net", help="net name (see `transfer plan show`)")
    p.add_argument("--plan", default="paper")
    p.add_argument("--gpu", type=int, metavar="K", help="train on GPU K")
    p.add_argument("--cpu", action="store_true", help="train on the CPU (whatever the plan says)")
    p.add_argument("--max-seconds", type=float, metavar="S",
                   help="after S seconds, snapshot and exit 75 (e.g. inside a batch job's time limit)")
    p.add_argument("--seed", type=int, help="seed of the fresh layers, if surgery has not run yet")
    p.set_defaults(func=_cmd)
