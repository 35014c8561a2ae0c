"""Which net definition a run directory holds: the record made at its first use, and what differs.

Two plans may share a runs_dir, and a plan may change after its nets trained (other widths, another
max_iter). So a run directory records, when it is first used (surgery or training), the definition it
trains, and every later use compares (transfer/plan/rundir.py): a DONE of another definition is not
done, and training refuses, naming both definitions and what differs.

A definition is the net's train/test/solver prototxt as the run directory copies them (the run's own
files relative to it), less what one attempt chooses (CPU or GPU, the batch of each GPU of a
multi-GPU attempt, the deterministic seed), with data paths as the plan gives them (so a moved
repository keeps its runs): their sha256, and for messages the numbers a reader compares (max_iter,
the solver's numbers, each layer's type, outputs and learning rates).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format

from ..caffe.env import caffe_pb2
from ..core.errors import TransferError
from ..core.files import repo_path, shown

KINDS = ("train", "test", "solver")
_ATTEMPT_FIELDS = ("solver_mode", "random_seed", "device_id")       # an attempt's choices
_OWN_FIELDS = ("train_net", "test_net", "snapshot_prefix", "net")   # the run's own files
# The files a plan names in a net (relative to the repository, or absolute): databases, means, views.
_PLAN_PATHS = (("data_param", "source"), ("data_param", "label_map_file"), ("data_param", "key_file"),
               ("transform_param", "mean_file"))


def _parse(text: str, message: str, where: Path | str) -> Any:
    try:
        return text_format.Merge(text, getattr(caffe_pb2(), message)())
    except text_format.ParseError as exc:
        raise TransferError(f"{shown(where)}: not a {message} Caffe reads ({exc})") from None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise TransferError(f"{shown(path)}: cannot read ({exc.strerror})") from None


def _protos(texts: dict[str, str], where: dict[str, Path | str]) -> dict[str, Any]:
    return {kind: _parse(texts[kind], "SolverParameter" if kind == "solver" else "NetParameter", where[kind])
            for kind in KINDS}


def protos_of(sources: tuple[Path, ...], own: dict[str, str], *, absolute_data: bool,
              mode: str | None = None, batch: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """The run directory's train/test/solver messages made from the plan's files `sources`: the
    solver names the run's own files as `own` gives them (train_net, test_net, snapshot_prefix);
    data and means by absolute path when `absolute_data` (what caffe reads); an attempt's `mode`
    (CPU or GPU), train `batch` of each GPU and solver `seed` where given (None: left out)."""
    paths = {kind: repo_path(src) for kind, src in zip(KINDS, sources)}
    protos = _protos({kind: _read(path) for kind, path in paths.items()}, paths)
    for kind in ("train", "test"):
        for layer in protos[kind].layer:
            if absolute_data:   # (caffe runs in the run directory; plan paths are the repository's)
                for param, name in _PLAN_PATHS:
                    sub = getattr(layer, param) if layer.HasField(param) else None
                    if sub is not None and name in sub.DESCRIPTOR.fields_by_name and getattr(sub, name):
                        setattr(sub, name, str(repo_path(getattr(sub, name))))
            if kind == "train" and batch is not None and layer.HasField("data_param"):
                layer.data_param.batch_size = batch
    solver = protos["solver"]
    for name in _ATTEMPT_FIELDS:
        solver.ClearField(name)
    solver.train_net = own["train_net"]
    del solver.test_net[:]
    solver.test_net.append(own["test_net"])
    solver.snapshot_prefix = own["snapshot_prefix"]
    if mode is not None:
        solver.solver_mode = getattr(caffe_pb2().SolverParameter, mode)
    if seed is not None:
        solver.random_seed = seed
    return protos


def texts_of(protos: dict[str, Any]) -> dict[str, str]:
    return {kind: text_format.MessageToString(proto) for kind, proto in protos.items()}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _layer(layer: Any) -> str:
    """`Convolution, 24 outputs, lr_mult 0/0`: what a reader compares of a layer."""
    parts = [layer.type]
    for field in ("convolution_param", "inner_product_param"):
        if layer.HasField(field):
            parts.append(f"{getattr(layer, field).num_output} outputs")
    if len(layer.param):
        parts.append("lr_mult " + "/".join(f"{p.lr_mult:g}" for p in layer.param))
    if layer.HasField("data_param") and layer.data_param.source:
        parts.append(f"batch {layer.data_param.batch_size} from {layer.data_param.source}")
    return ", ".join(parts)


def describe(protos: dict[str, Any], absolute_data: bool) -> dict[str, Any]:
    """The record of a definition: sha256 of each file, and the numbers messages compare."""
    for name in _ATTEMPT_FIELDS:
        protos["solver"].ClearField(name)
    solver = json_format.MessageToDict(protos["solver"], preserving_proto_field_name=True)
    return {"sha256": {kind: _sha(text) for kind, text in texts_of(protos).items()},
            "absolute_data": absolute_data, "max_iter": protos["solver"].max_iter,
            "solver": {k: v for k, v in solver.items() if k not in _OWN_FIELDS},
            "layers": {layer.name: _layer(layer) for layer in protos["train"].layer},
            "layer_sha256": {layer.name: _sha(text_format.MessageToString(layer))[:16] for layer in protos["train"].layer}}


def from_copies(copies: dict[str, Path], batch: int | None) -> dict[str, Any]:
    """The definition a run directory's own copies hold (one used before definitions were recorded):
    data by absolute path, as the copies have them; `batch`, the plan's train batch where the last
    attempt split it over several GPUs."""
    protos = _protos({kind: _read(path) for kind, path in copies.items()}, copies)
    if batch is not None:
        for layer in protos["train"].layer:
            if layer.HasField("data_param"):
                layer.data_param.batch_size = batch
    return describe(protos, absolute_data=True)


def differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two definitions, as `what: recorded vs now` lines; [] when they are one."""
    if recorded.get("sha256") == now["sha256"]:
        return []
    out = []
    if recorded.get("max_iter") != now["max_iter"]:
        out.append(f"max_iter {recorded.get('max_iter')} vs {now['max_iter']}")
    old, new = recorded.get("solver", {}), now["solver"]
    out += [f"solver {k}: {old.get(k, '-')} vs {new.get(k, '-')}" for k in sorted(set(old) | set(new))
            if k != "max_iter" and old.get(k) != new.get(k)]
    old, new = recorded.get("layers", {}), now["layers"]
    old_sha, new_sha = recorded.get("layer_sha256", {}), now["layer_sha256"]
    for k in list(old) + [k for k in new if k not in old]:
        if old.get(k) != new.get(k):
            out.append(f"layer {k}: {old.get(k, '(none)')} vs {new.get(k, '(none)')}")
        elif old_sha.get(k, new_sha[k]) != new_sha[k]:
            out.append(f"layer {k}: other settings (sha256 {old_sha[k][:12]} vs {new_sha[k][:12]})")
    if not out:   # a difference no summary shows (the test net, a setting not listed): name the files
        old = recorded.get("sha256", {})
        out = [f"{kind}.prototxt sha256 {str(old.get(kind))[:12]} vs {now['sha256'][kind][:12]}"
               for kind in KINDS if old.get(kind) != now["sha256"][kind]]
    return out


def recorded_by(record: dict[str, Any]) -> str:
    """`plan 'tiny' (a.yaml, 2026-12-02T01:31:46)`, or what is known of a run made before records."""
    if not record.get("plan"):
        return "an earlier run (read from the run directory's own copies; it recorded no plan)"
    return f"plan '{record['plan']}' ({record.get('plan_file', '?')}, {record.get('recorded', '?')})"
