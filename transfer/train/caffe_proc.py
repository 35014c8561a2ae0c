"""The `caffe train` process of one attempt: its command, its environment, its signals, its progress.

SIGINT/SIGTERM (and --max-seconds) make caffe stop at the end of its iteration and snapshot
(`-sigint_effect stop`); caffe dies with us when we are killed, so no orphan trains a net whose lock is gone.
A loss that is not finite (transfer/caffe/divergence.py) stops caffe at once, without a snapshot.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..caffe import precision as precision_
from ..caffe.logs import Divergence, Watch
from ..caffe.env import caffe_binary
from ..caffe.precision import PrecisionSpec
from ..core import locks, stopsig
from ..core.console import stage
from ..plan.model import Net
from .progress import training_progress

log = stage("train")


_PR_SET_PDEATHSIG = 1
POLL_S = 0.2   # how often the log is read, the deadline checked and the lock touched


def _child_setup() -> None:
    """In caffe, before exec: ignore SIGTERM (a batch system's SIGTERM reaches every process of
    a job; we answer it by sending SIGINT, which caffe turns into a snapshot) and die with us
    if we are killed (-9), so no orphan keeps training a net whose lock is gone."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux


class Stop:
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


@dataclass(frozen=True)
class Ended:
    """How a caffe process ended: its exit status, whether we asked it to stop, and where its loss
    stopped being finite if it did (then we killed it)."""

    rc: int
    asked: bool = False
    diverged: Divergence | None = None


def run_caffe(net: Net, lock: locks.Lock, cmd: list[str], log_path: Path, stop: Stop,
              progress_every: float = 0, precision: PrecisionSpec = PrecisionSpec()) -> Ended:
    """Run caffe until it exits. Every `progress_every` seconds (0: never) a progress line: iteration,
    loss, accuracy, speed, time left. The log is watched as caffe writes it: at the first loss that
    is not finite caffe is killed at once (a SIGINT would snapshot weights that are NaN; caffe's max
    pooling may corrupt memory on them). `precision` reaches caffe as environment variables
    (transfer/caffe/precision.py)."""
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
    watch = Watch(log_path)
    next_progress = time.time() + progress_every
    try:
        while proc.poll() is None:
            if watch.poll() is not None:
                log.info("%s: %s: stopping caffe (pid %d)", net.name, watch.found, proc.pid)
                proc.kill()
                break
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
                proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if proc.poll() is None:  # we are leaving by an exception (or killed it): take caffe down with us
            proc.kill()
        proc.wait()
    return Ended(proc.returncode, asked, watch.poll(to_end=True))
