"""Checks before any training (`transfer train`, `transfer run`): what caffe will read is there and
fits the net, the bases are done, and the disk can hold what training writes.

Run before anything is written to a run directory, so a plan without its data fails in seconds
rather than after writing init files, or hours into training.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..data.derive import read_label_map
from ..data.means import read_mean
from ..data.verify import check_label_range
from ..core.errors import NoSpaceError, TransferError
from ..core.files import repo_path, shown, size_text
from ..data.lmdb_store import MANIFEST, datum_shape, open_read
from ..plan.model import Net, Plan
from ..plan.spec import ModelSpec
from . import integrity

FLOAT_BYTES = 4
SNAPSHOT_COPIES = 2  # a snapshot is the .caffemodel and a .solverstate holding as many floats (momentum)


def param_count(model: ModelSpec, fc8: int) -> int:
    """Learned numbers of CaffeNet at the plan's widths and crop (weights and biases)."""
    w1, w2, w3, w4, w5, w6, w7 = model.widths

    def pool(s: int) -> int:  # 3x3 stride 2, Caffe rounds up
        return -(-(s - 3) // 2) + 1

    p5 = pool(pool(pool((model.crop - 11) // 4 + 1)))
    weights = (11 * 11 * 3 * w1 + 5 * 5 * (w1 // 2) * w2 + 3 * 3 * w2 * w3 + 3 * 3 * (w3 // 2) * w4
               + 3 * 3 * (w4 // 2) * w5 + p5 * p5 * w5 * w6 + w6 * w7 + w7 * fc8)
    return weights + w1 + w2 + w3 + w4 + w5 + w6 + w7 + fc8


def disk_bytes(plan: Plan, net: Net) -> int:
    """What training the net still writes: init files and the snapshots not yet taken."""
    one = param_count(plan.model, net.fc8_outputs) * FLOAT_BYTES * SNAPSHOT_COPIES
    done = {it for it, _ in net.run.snapshots()}
    every = net.solver.snapshot
    left = [it for it in range(every, net.max_iter + 1, every) if it not in done]
    if net.max_iter not in done and net.max_iter % every:
        left.append(net.max_iter)   # caffe snapshots at the end as well
    init = 0 if net.run.init_state.is_file() else 1
    return one * (len(left) + init)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_view(label_map: Path, classes: int) -> None:
    new = sorted(set(read_label_map(label_map).values()))
    if not new:
        raise TransferError(f"{label_map}: the label map keeps no class")
    if new[-1] >= classes:
        raise TransferError(f"{label_map}: maps to label {new[-1]}, but the net has {classes} classes")


def _shape(db: Path) -> tuple[int, int, int] | None:
    """The Datum shape a database's manifest gives; None without a readable one (reported on its own)."""
    try:
        return datum_shape(db) if (db / MANIFEST).is_file() else None
    except TransferError:
        return None


def _data_problems(net: Net, seen: dict[tuple[str, int], str | None]) -> list[str]:
    problems = []
    for what, rel, view in (("training data", net.files.train_data, net.files.train_labels),
                            ("validation data", net.files.val_data, net.files.val_labels)):
        db = repo_path(rel)
        key = (str(db) + (f"|{view}" if view else ""), net.num_classes)
        if key not in seen:
            try:
                open_read(db).close()
                if view:   # read through a label map: the labels the net sees are the map's
                    _check_view(repo_path(view), net.num_classes)
                else:
                    check_label_range(db, net.num_classes)
                seen[key] = None
            except TransferError as exc:
                seen[key] = str(exc)
        if seen[key]:
            problems.append(f"{net.name}: {what}: {seen[key]}")
    mean, train_db = repo_path(net.files.mean), repo_path(net.files.train_data)
    key = (f"{mean}|{train_db}", 0)
    if key not in seen:
        try:
            read_mean(str(mean), _shape(train_db))   # the mean is subtracted from these Datums: same shape
            seen[key] = None
        except TransferError as exc:
            seen[key] = str(exc)
    if seen[key]:
        problems.append(f"{net.name}: mean: {seen[key]}")
    return problems


def check(plan: Plan, nets: list[Net], training: set[str] | None = None, retrain: bool = False) -> str:
    """Check every net about to train; returns a one-line summary (data checked, disk needed).

    `training`: the names trained by this command, whose bases may be among them (`transfer run`);
    any other base must be done. A run directory holding another definition of its net is a problem
    unless `retrain` (transfer/train/integrity.py). Raises a TransferError listing every problem, each
    naming the net, the file and what to do; a NoSpaceError when the disk cannot hold the snapshots."""
    todo = [n for n in nets if not n.run.is_done()]
    training = training if training is not None else set()
    problems: list[str] = []
    others = [p for n in todo if not retrain and (p := integrity.definition_problem(plan, n)) is not None]
    seen: dict[tuple[str, int], str | None] = {}
    for net in todo:
        problems += _data_problems(net, seen)
        base = plan.base_of(net)
        if base is not None and not base.run.is_done() and base.name not in training:
            problems.append(f"{net.name}: copies layers 1..{net.copied} from '{base.name}', which is not "
                            f"finished: train it first (`transfer train {base.name} --plan {plan.arg}`)")
    if problems or others:
        listed = others + problems
        shown_ = listed[:20] + ([f"... and {len(listed) - 20} more"] if len(listed) > 20 else [])
        hints = ([integrity.START_OVER] if others else []) + \
            ([f"make the data with `transfer prepare --plan {plan.arg}`"] if problems else [])
        raise TransferError("not ready to train:\n  " + "\n  ".join(shown_) + "".join(f"\n  ({h})" for h in hints))
    need = sum(disk_bytes(plan, n) for n in todo)
    where = _existing(repo_path(plan.dirs.runs))
    free = shutil.disk_usage(where).free
    if need > free:
        raise NoSpaceError(f"training {len(todo)} net(s) writes about {size_text(need)} of snapshots and init "
                           f"files under {shown(repo_path(plan.dirs.runs))}; {size_text(free)} free there: free "
                           "space, or raise the solver's snapshot interval")
    return f"{len(todo)} net(s) to train: data, means and bases checked; about {size_text(need)} to write, " \
           f"{size_text(free)} free"
