"""A run directory's copies of the plan's net files, and the solver states training starts from.

The train/test/solver prototxt are copied into the run directory on every attempt, data and means by
absolute path and the run's own files relative to it, so a moved runs folder trains from its own files.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from ..caffe.caffemodel import read_model, read_state
from ..caffe.env import caffe_pb2
from ..core.errors import TransferError
from ..core.files import atomic_write, shown
from ..plan.definition import texts_of
from ..plan.model import Net, Plan
from ..plan.rundir import RunDir
from .options import per_gpu_batch


def write_run_files(plan: Plan, net: Net, mode: str, gpus: int = 1, deterministic: bool = False) -> Path:
    """The plan's train/test/solver prototxt copied into the run dir, rewritten on every attempt:
    data and means by absolute path, the run's own files relative to it (caffe runs inside it), so
    a moved runs folder trains from its own files. On `gpus` GPUs the train batch is split
    between them (per_gpu_batch), so the effective batch stays the plan's. `deterministic`: the
    solver gets a fixed random_seed (the net's), so dropout masks and crops repeat in a rerun.
    (What the copies hold but for these choices is the run's definition: transfer/plan/definition.py.)"""
    run = net.run
    missing = [p for p in net.files.generated() if not p.is_file()]
    if missing:
        raise TransferError(f"{shown(missing[0])} does not exist: run `transfer nets write --plan {plan.arg}`")
    texts = texts_of(run.copy_protos(
        mode=mode, batch=per_gpu_batch(plan.model.train_batch, gpus) if gpus > 1 else None,
        # (otherwise caffe seeds from the clock, as the paper's runs did)
        seed=zlib.crc32(net.name.encode()) & 0x7FFFFFFF if deterministic else None))
    for kind, text in texts.items():
        path = run.net_copy(kind)
        if not path.is_file() or path.read_text() != text:
            atomic_write(path, text)
    run.snapshots_dir.mkdir(exist_ok=True)
    run.logs_dir.mkdir(exist_ok=True)
    return run.net_copy("solver")


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


def per_gpu_batch_of(train_prototxt: Path) -> int | None:
    """The batch size of a run's train net copy (its TRAIN data layer)."""
    proto = text_format.Merge(train_prototxt.read_text(), caffe_pb2().NetParameter())
    return next((l.data_param.batch_size for l in proto.layer if l.HasField("data_param")), None)
