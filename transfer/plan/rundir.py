"""A net's run directory, `<runs_dir>/<net>/`: the one module that knows its file names.

  definition.json                      the net definition this directory trains, recorded at its first
                                       use (definition.py): a later use of another one is refused
  init.caffemodel, surgery.json        starting weights and how they were made (surgery.py)
  init.solverstate                     iteration 0 with init.caffemodel: the first attempt's start
  train/test/solver.prototxt           the plan's files: data by absolute path, the run's own files relative
  logs/attempt-NNN.log                 caffe's glog output, one file per attempt
  attempts.jsonl                       one line per attempt: host, times, exit status, resumed from,
                                       precision (fp32/tf32) and determinism, the GPU and build
  snapshots/<net>_iter_<N>.caffemodel|.solverstate
  snapshots/<name>.unreadable|.diverged  snapshots set aside: cut short or empty (a full disk, a kill),
                                       or written after the loss stopped being finite; never resumed from
  superseded/<time>/                   the files of another definition, set aside by --retrain
  .space-reserve                       a little disk kept free while caffe trains, for the records
                                       of an attempt that ends on a full disk
  DONE                                 json, only once the snapshot at max_iter exists and the
                                       frozen layers were checked bit-identical to their source (the
                                       base's final weights, or init.caffemodel as surgery wrote it)
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import locks
from ..caffe.caffemodel import learned_layers, read_model, read_state
from ..core.errors import TransferError
from ..core.files import append_jsonl, atomic_write, digest, read_jsonl, repo_path, shown
from . import definition

log = logging.getLogger(__name__)

_SNAP = re.compile(r"_iter_(\d+)\.solverstate$")
_ATTEMPT = re.compile(r"attempt-(\d+)\.log")
_TWO_HISTORIES = re.compile(r'^type:\s*"(Adam|AdaDelta)"', re.M)   # solvers keeping two histories a blob


@dataclass(frozen=True)
class RunDir:
    """The run directory of net `net` (which trains `max_iter` iterations) at `where`: as the plan
    gives it, relative to the repository or absolute. `sources`: the plan's train, test and solver
    files the directory copies (None: a directory only read, whose definition is not checked)."""

    where: Path
    net: str
    max_iter: int
    sources: tuple[Path, Path, Path] | None = None

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

    @property
    def definition_file(self) -> Path:
        return self.path / "definition.json"

    @property
    def superseded_dir(self) -> Path:
        return self.path / "superseded"

    @property
    def space_reserve(self) -> Path:
        return self.path / ".space-reserve"

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
        """Finished: DONE written, the final weights there, and the directory holds the definition
        the plan asks for (a DONE of another plan's net, or of this net before the plan changed, is not)."""
        return self.done_file.is_file() and self.final_weights.is_file() and self.other_definition() is None

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

    def snapshot_problem(self, iteration: int, state: Path) -> str | None:
        """Why caffe cannot resume from a snapshot (a file missing, empty or cut short); None when it can.

        Caffe writes the .caffemodel, then the .solverstate, neither atomically: a kill or a full disk
        during a snapshot leaves a pair cut short. A cut at a message boundary still parses (an empty
        file is an empty message, which caffe would load as "no weights" and train from fillers), so
        the two files must agree: one momentum history a weight blob (two for Adam and AdaDelta)."""
        solver = self.net_copy("solver")
        two = solver.is_file() and _TWO_HISTORIES.search(solver.read_text(errors="replace")) is not None
        try:
            st = read_state(state)
            if st.iter != iteration:
                return f"{state.name}: iteration {st.iter}, not {iteration} as its name says"
            model = state.with_suffix(".caffemodel")
            blobs = sum(len(layer.blobs) for layer in learned_layers(read_model(model)).values())
        except (TransferError, OSError) as exc:
            return str(exc)
        if not blobs or len(st.history) != (2 if two else 1) * blobs:
            return (f"{model.name} holds {blobs} weight blob(s) and {state.name} {len(st.history)} "
                    "histories: empty or cut short")
        return None

    def resume_point(self, set_aside: bool = False) -> tuple[int, Path] | None:
        """The newest snapshot caffe can restore (snapshot_problem), skipping the others.

        `set_aside` (only the net's trainer, holding its lock: a snapshot being written looks cut
        short too): rename the snapshots skipped, and weights newer than the point without their
        solver state, `<file>.unreadable`, so that nothing ever resumes from them or counts them."""
        point = None
        for it, state in self.snapshots():
            problem = self.snapshot_problem(it, state)
            if problem is None:
                point = it, state
                break
            if set_aside:
                self.set_aside_snapshot(it, "unreadable")
            log.warning("%s: %s snapshot at iteration %d (%s)", self.net, "set aside the" if set_aside
                        else "skipping the unreadable", it, problem)
        if set_aside and self.snapshots_dir.is_dir():
            for model in self.snapshots_dir.glob(f"{self.net}_iter_*.caffemodel"):
                it = int(model.stem.rsplit("_", 1)[1])
                if (point is None or it > point[0]) and not model.with_suffix(".solverstate").exists():
                    log.warning("%s: set aside %s, written without its solver state", self.net, model.name)
                    self.set_aside_snapshot(it, "unreadable")
        return point

    def set_aside_snapshot(self, iteration: int, why: str) -> list[Path]:
        """Rename a snapshot's files `<file>.<why>`: within their folder, which needs no free space."""
        moved = []
        for ext in ("caffemodel", "solverstate"):
            path = self.snapshot(iteration, ext)
            if path.exists():
                os.replace(path, path.with_name(f"{path.name}.{why}"))
                moved.append(path.with_name(f"{path.name}.{why}"))
        return moved

    # -------------------------------------------------------------------- which definition
    def own_names(self) -> dict[str, str]:
        """The run's own files as its solver copy names them: relative to the run directory (caffe runs
        in it), so a moved runs folder trains from its own files."""
        return {"train_net": os.path.relpath(self.net_copy("train"), self.path),
                "test_net": os.path.relpath(self.net_copy("test"), self.path),
                "snapshot_prefix": os.path.relpath(self.snapshot_prefix, self.path)}

    def copy_protos(self, absolute_data: bool = True, **attempt: Any) -> dict[str, Any]:
        """The run's train/test/solver copies as messages (definition.protos_of; `attempt`: mode, batch, seed)."""
        if self.sources is None:
            raise ValueError(f"{self.net}: a run directory without the plan's files has no copies to make")
        return definition.protos_of(self.sources, self.own_names(), absolute_data=absolute_data, **attempt)

    def expected_definition(self, absolute_data: bool = False) -> dict[str, Any]:
        """The definition the plan's files give this net now (cached while the files stay unchanged)."""
        files = [repo_path(src) for src in self.sources or ()]
        key = (str(self.path), absolute_data, *((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files))
        if key not in _EXPECTED:
            _EXPECTED[key] = definition.describe(self.copy_protos(absolute_data), absolute_data)
        return _EXPECTED[key]

    def _source_digests(self) -> dict[str, str]:
        return {kind: digest(repo_path(src)) for kind, src in zip(definition.KINDS, self.sources or ())}

    def recorded_definition(self) -> dict[str, Any] | None:
        """The definition this directory holds: definition.json; for a directory used before those were
        recorded, what its own copies hold; None for a directory not used yet."""
        if self.definition_file.is_file():
            try:
                return json.loads(self.definition_file.read_text())
            except ValueError:
                raise TransferError(f"{shown(self.definition_file)}: damaged or cut short (not JSON): delete it, "
                                    "and the next use records the definition again from the run's copies") from None
        copies = {kind: self.net_copy(kind) for kind in definition.KINDS}
        if not all(path.is_file() for path in copies.values()):
            return None
        last = self.attempts()[-1:]
        return definition.from_copies(copies, last[0].get("effective_batch") if last else None)

    def other_definition(self) -> tuple[dict[str, Any], list[str]] | None:
        """(the recorded definition, what differs) when this directory holds another definition of the
        net than the plan's files give; None when it holds theirs, is unused, or is not checked."""
        if self.sources is None:
            return None
        recorded = self.recorded_definition()
        if recorded is None:
            return None
        missing = [repo_path(src) for src in self.sources if not repo_path(src).is_file()]
        if missing:
            return recorded, [f"{shown(missing[0])} does not exist, so no definition can be compared (write "
                              "the plan's net files: `transfer nets write`)"]
        if recorded.get("sources_sha256") == self._source_digests():
            return None   # the very files it was recorded from
        diffs = definition.differences(recorded, self.expected_definition(recorded.get("absolute_data", False)))
        return (recorded, diffs) if diffs else None

    def record_definition(self, plan: str, plan_file: str) -> None:
        """Record, at the directory's first use, the definition it trains (and the plan that asked)."""
        atomic_write(self.definition_file, json.dumps({
            "net": self.net, "plan": plan, "plan_file": plan_file, "recorded": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **self.expected_definition(), "sources_sha256": self._source_digests()}, indent=1) + "\n")

    def supersede(self) -> Path:
        """Move every file of the directory but its lock and SLURM job files to superseded/<time>/,
        so that another definition trains here; returns that folder."""
        dest = self.superseded_dir / time.strftime("%Y%m%d-%H%M%S")
        while dest.exists():
            dest = dest.with_name(dest.name + "+")
        dest.mkdir(parents=True)
        keep = (self.superseded_dir.name, self.slurm_dir.name)
        for entry in list(self.path.iterdir()):
            if entry.name not in keep and not entry.name.startswith(self.lock_file.name):
                os.replace(entry, dest / entry.name)
        return dest


_EXPECTED: dict[tuple, dict[str, Any]] = {}


def submissions_file(runs_dir: Path) -> Path:
    """The log of every SLURM submission for the run directories under `runs_dir`."""
    return repo_path(runs_dir) / "slurm" / "submissions.jsonl"
