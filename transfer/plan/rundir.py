"""A net's run directory, `<runs_dir>/<net>/`: the one module that knows its file names.

  init.caffemodel, surgery.json        starting weights and how they were made (surgery.py)
  init.solverstate                     iteration 0 with init.caffemodel: the first attempt's start
  train/test/solver.prototxt           the plan's files: data by absolute path, the run's own files relative
  logs/attempt-NNN.log                 caffe's glog output, one file per attempt
  attempts.jsonl                       one line per attempt: host, times, exit status, resumed from,
                                       precision (fp32/tf32) and determinism, the GPU and build
  snapshots/<net>_iter_<N>.caffemodel|.solverstate
  DONE                                 json, only once the snapshot at max_iter exists and the
                                       frozen layers were checked bit-identical to init.caffemodel
  FAILED                               json, when the last attempt failed (removed by the next one)
  lock                                 who trains the net (locks.py)
  slurm/job.sh, slurm/<job id>.out     the SLURM job script and the jobs' output
  analysis/                            `transfer analyze`'s cache: per-batch Gram matrices of the net's
                                       layers on an image set, keyed by weights and images

and beside the run directories, `<runs_dir>/slurm/submissions.jsonl`: every SLURM submission.

Training, surgery, the runner, SLURM, status, the report and the tests all ask a `RunDir`.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import locks
from ..caffe.caffemodel import read_model, read_state
from ..core.errors import TransferError
from ..core.files import append_jsonl, atomic_write, read_jsonl, repo_path

log = logging.getLogger(__name__)

_SNAP = re.compile(r"_iter_(\d+)\.solverstate$")
_ATTEMPT = re.compile(r"attempt-(\d+)\.log")


@dataclass(frozen=True)
class RunDir:
    """The run directory of net `net` (which trains `max_iter` iterations) at `where`: as the plan
    gives it, relative to the repository or absolute."""

    where: Path
    net: str
    max_iter: int

    # -------------------------------------------------------------------- paths
    @property
    def path(self) -> Path:
        return repo_path(self.where)

    @property
    def init_weights(self) -> Path:
        return self.path / "init.caffemodel"

    @property
    def surgery_record(self) -> Path:
        return self.path / "surgery.json"

    @property
    def init_state(self) -> Path:
        return self.path / "init.solverstate"

    def net_copy(self, kind: str) -> Path:
        """`train`, `test` or `solver`: the plan's file copied here (see train.write_run_files)."""
        if kind not in ("train", "test", "solver"):
            raise ValueError(kind)
        return self.path / f"{kind}.prototxt"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def snapshots_dir(self) -> Path:
        return self.path / "snapshots"

    @property
    def snapshot_prefix(self) -> Path:
        return self.snapshots_dir / self.net

    @property
    def plan_snapshot_prefix(self) -> Path:
        """The snapshot prefix as the plan's generated solver file writes it (plan-relative)."""
        return self.where / "snapshots" / self.net

    def snapshot(self, iteration: int, ext: str = "caffemodel") -> Path:
        return self.snapshots_dir / f"{self.net}_iter_{iteration}.{ext}"

    @property
    def final_weights(self) -> Path:
        """The weights a finished net leaves: its snapshot at max_iter."""
        return self.snapshot(self.max_iter)

    @property
    def analysis_dir(self) -> Path:
        return self.path / "analysis"

    @property
    def done_file(self) -> Path:
        return self.path / "DONE"

    @property
    def failed_file(self) -> Path:
        return self.path / "FAILED"

    @property
    def lock_file(self) -> Path:
        return self.path / "lock"

    @property
    def attempts_file(self) -> Path:
        return self.path / "attempts.jsonl"

    @property
    def slurm_dir(self) -> Path:
        return self.path / "slurm"

    @property
    def job_script(self) -> Path:
        return self.slurm_dir / "job.sh"

    def slurm_outputs(self) -> list[Path]:
        """The SLURM jobs' output files, oldest first."""
        if not self.slurm_dir.is_dir():
            return []
        return sorted(self.slurm_dir.glob("*.out"), key=lambda f: f.stat().st_mtime)

    # -------------------------------------------------------------------- state
    def is_done(self) -> bool:
        """Finished: DONE written and the final weights there."""
        return self.done_file.is_file() and self.final_weights.is_file()

    def done_record(self) -> dict[str, Any]:
        return json.loads(self.done_file.read_text())

    def write_done(self, record: dict[str, Any]) -> None:
        atomic_write(self.done_file, json.dumps(record, indent=1) + "\n")
        self.clear_failed()

    def failed_record(self) -> dict[str, Any] | None:
        """The last failure, None when there is none; {} when the file cannot be read."""
        if not self.failed_file.is_file():
            return None
        try:
            return json.loads(self.failed_file.read_text())
        except ValueError:
            return {}

    def write_failed(self, record: dict[str, Any]) -> None:
        atomic_write(self.failed_file, json.dumps(record, indent=1))

    def clear_failed(self) -> None:
        self.failed_file.unlink(missing_ok=True)

    # -------------------------------------------------------------------- locking
    def acquire_lock(self) -> locks.Lock:
        """The net's lock (raises locks.LockHeld when a live process holds it)."""
        return locks.acquire(self.lock_file)

    def lock_holder(self) -> dict[str, Any] | None:
        """The live lock's record (host, pid, ...), None when nobody trains the net."""
        info = locks.read(self.lock_file)
        return info if info is not None and locks.stale_reason(info) is None else None

    def is_locked(self) -> bool:
        return locks.is_live(self.lock_file)

    def has_lock_file(self) -> bool:
        return self.lock_file.exists()

    # -------------------------------------------------------------------- logs and attempts
    def log_files(self) -> list[Path]:
        """Attempt logs, oldest first."""
        return sorted(self.logs_dir.glob("attempt-*.log")) if self.logs_dir.is_dir() else []

    def attempt_log(self, attempt: int) -> Path:
        return self.logs_dir / f"attempt-{attempt:03d}.log"

    def new_log(self) -> tuple[int, Path]:
        """The next attempt's number and its (created, empty) log file."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        n = 1 + max((int(m.group(1)) for p in self.logs_dir.iterdir()
                     if (m := _ATTEMPT.fullmatch(p.name))), default=0)
        while True:  # O_EXCL: a number is never reused, even by a racing process
            path = self.attempt_log(n)
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                return n, path
            except FileExistsError:
                n += 1

    def attempts(self) -> list[dict[str, Any]]:
        return read_jsonl(self.attempts_file)

    def append_attempt(self, record: dict[str, Any]) -> None:
        append_jsonl(self.attempts_file, record)

    # -------------------------------------------------------------------- snapshots
    def snapshots(self) -> list[tuple[int, Path]]:
        """(iteration, .solverstate) pairs, newest first."""
        found = []
        if self.snapshots_dir.is_dir():
            for p in self.snapshots_dir.iterdir():
                m = _SNAP.search(p.name)
                if m and p.name.startswith(f"{self.net}_iter_"):
                    found.append((int(m.group(1)), p))
        return sorted(found, reverse=True)

    def has_trained_weights(self) -> bool:
        return self.snapshots_dir.is_dir() and any(self.snapshots_dir.glob("*.caffemodel"))

    def resume_point(self) -> tuple[int, Path] | None:
        """The newest snapshot caffe can restore: both files there and parseable.

        Caffe writes the .caffemodel, then the .solverstate, neither atomically: a kill during
        a snapshot leaves a truncated pair, skipped here in favour of the one before.
        """
        for it, state in self.snapshots():
            try:
                if read_state(state).iter != it:
                    raise TransferError(f"{state.name}: iteration does not match its name")
                read_model(state.with_suffix(".caffemodel"))
            except (TransferError, OSError) as exc:
                log.warning("%s: skipping unreadable snapshot %s (%s)", self.net, state.name, exc)
                continue
            return it, state
        return None


def submissions_file(runs_dir: Path) -> Path:
    """The log of every SLURM submission for the run directories under `runs_dir`."""
    return repo_path(runs_dir) / "slurm" / "submissions.jsonl"
