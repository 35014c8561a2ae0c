"""Weight surgery: a net's starting weights (its run directory's init weights), made with pycaffe.

Layers 1..copied are copied bit-exactly (protobuf blobs, never through floats) from the base
net's final snapshot; every other layer is drawn from the net's own fillers by pycaffe after
`caffe.set_random_seed(seed)`, so a net's start is reproducible from the seed in surgery.json.
This is what the released code did with renamed layers and `caffe train -weights base.caffemodel`.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import text_format

from ..caffe.env import caffe_pb2, import_caffe
from ..caffe.caffemodel import blob_shape, layer_arrays, learned_layers, read_model
from ..caffe.logs import describe_exit, first_error
from ..core import argtypes
from ..core.errors import TransferError, space_error
from ..core.files import atomic_write, digest, repo_path, shown
from ..core.locks import LockHeld
from ..plan.model import LAYERS, Net, Plan
from ..plan.load import load_plan
from . import integrity


def default_seed(net: Net) -> int:
    # Stable per net name, different across nets: independent draws, reproducible anywhere.
    return zlib.crc32(net.name.encode()) & 0x7FFFFFFF


# ---------------------------------------------------------------------------- surgery

def input_net_text(plan: Plan, net: Net) -> str:
    """The train net with its data layers replaced by an Input layer of batch 1.

    Parameter shapes and fillers are the train net's; no LMDB is opened and no batch-256
    activations are allocated just to draw weights.
    """
    pb = caffe_pb2()
    src = repo_path(net.files.train_net)
    if not src.is_file():
        raise TransferError(f"{shown(src)} does not exist: run `transfer nets write --plan {plan.arg}`")
    proto = pb.NetParameter()
    text_format.Merge(src.read_text(), proto)
    out = pb.NetParameter(name=proto.name)
    size = plan.model.crop
    for layer in proto.layer:
        if layer.type in ("Data", "ImageData"):
            phases = [r.phase for r in layer.include if r.HasField("phase")]
            if phases and pb.TRAIN not in phases:
                continue
            crop = layer.transform_param.crop_size or size
            inp = out.layer.add(name=layer.name, type="Input", top=list(layer.top))
            inp.input_param.shape.add(dim=[1, 3, crop, crop])
            for _ in layer.top[1:]:
                inp.input_param.shape.add(dim=[1])
        else:
            out.layer.add().CopyFrom(layer)
    return text_format.MessageToString(out)


def draw_fresh(plan: Plan, net: Net, seed: int) -> Any:
    """Every layer of the net drawn from its fillers with pycaffe; returns the NetParameter.

    pycaffe runs in a child process: a net file Caffe refuses ends it with a fatal CHECK (abort),
    which here becomes an error naming the net file and Caffe's message, not the end of the command."""
    with tempfile.TemporaryDirectory(prefix="transfer-surgery-") as tmp:
        proto_path = Path(tmp) / "net.prototxt"
        proto_path.write_text(input_net_text(plan, net))
        model_path = Path(tmp) / "fresh.caffemodel"
        output = Path(tmp) / "caffe.log"
        pid = os.fork()
        if pid == 0:  # the child: pycaffe, its glog lines into `output`
            code = 1
            try:
                fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 2)
                caffe = import_caffe()
                caffe.set_mode_cpu()
                caffe.set_random_seed(seed)
                cnet = caffe.Net(str(proto_path), caffe.TRAIN)
                cnet.save(str(model_path))
                code = 0
            except BaseException as exc:  # noqa: BLE001 (reported through the output file)
                os.write(2, f"E {type(exc).__name__}: {exc}\n".encode())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if status != 0 or not model_path.is_file():
            rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            first = first_error(output)
            why = (first.text + (f" [{first.where}]" if first.where else "")) if first else "no message"
            raise TransferError(f"net '{net.name}': pycaffe could not build {shown(repo_path(net.files.train_net))} "
                                f"({describe_exit(rc)}): {why}")
        return read_model(model_path)


def base_weights(plan: Plan, net: Net) -> Path | None:
    """The finished base weights a net copies from; refuses when the base is not finished."""
    if net.copied == 0:
        return None
    if net.base is None:
        raise TransferError(f"net '{net.name}' copies {net.copied} layers but names no base net")
    base = plan.net(net.base)
    path = base.run.final_weights
    if not path.is_file():
        raise TransferError(
            f"net '{net.name}' copies layers 1..{net.copied} from '{base.name}', which is not finished: "
            f"{shown(path)} does not exist (train it first: transfer train {base.name} --plan {plan.arg})")
    return path


def copy_layers(net: Net, mine: dict[str, Any], base_path: Path) -> None:
    """Replace the blobs of layers 1..copied in `mine` by the base's, after checking every shape."""
    theirs = learned_layers(read_model(base_path))
    copied = LAYERS[:net.copied]
    for name in copied:  # check every layer before changing any
        if name not in theirs:
            raise TransferError(f"net '{net.name}': layer {name} cannot be copied: "
                                f"{shown(base_path)} has no layer {name}")
        want = [blob_shape(b) for b in mine[name].blobs]
        have = [blob_shape(b) for b in theirs[name].blobs]
        if want != have:
            raise TransferError(
                f"net '{net.name}': layer {name} cannot be copied from '{net.base}': shapes {have} "
                f"in {shown(base_path)} but {want} in {net.files.train_net}")
    for name in copied:
        del mine[name].blobs[:]
        mine[name].blobs.extend(theirs[name].blobs)


def surgery_record(net: Net, seed: int, model: Any, base_path: Path | None) -> dict[str, Any]:
    """What surgery.json says: per layer copied or drawn, frozen or learning, shapes and norms."""
    arrays = layer_arrays(model)
    layers = [{"layer": name,
               "init": f"copied from {net.base}" if i <= net.copied else "random (filler)",
               "frozen": i <= net.frozen,
               "shapes": [list(a.shape) for a in arrays[name]],
               "norms": [float(np.linalg.norm(a.astype(np.float64))) for a in arrays[name]]}
              for i, name in enumerate(LAYERS, start=1)]
    return {
        "net": net.name, "treatment": net.treatment, "seed": seed,
        "base": net.base if base_path else None,
        "base_weights": shown(base_path) if base_path else None,
        "base_sha256": digest(base_path) if base_path else None,
        "copied": LAYERS[:net.copied], "frozen": LAYERS[:net.frozen],
        "init_sha256": digest(net.run.init_weights), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "layers": layers,
    }


def make_init(plan: Plan, net: Net, seed: int | None = None, force: bool = False) -> Path:
    """Write the run directory's init weights and surgery record; returns the weights' path.

    Does nothing when both exist (unless force): the start of a net never changes once drawn.
    """
    init, record = net.run.init_weights, net.run.surgery_record
    if init.is_file() and record.is_file() and not force:
        return init
    if force and net.run.has_trained_weights():
        raise TransferError(f"net '{net.name}' has snapshots trained from {shown(init)}: remove "
                            f"{shown(net.run.path)} to start it over")
    seed = default_seed(net) if seed is None else int(seed)
    base_path = base_weights(plan, net)
    fresh = draw_fresh(plan, net, seed)
    mine = learned_layers(fresh)
    missing = [name for name in LAYERS if name not in mine]
    if missing:
        raise TransferError(f"net '{net.name}': {shown(repo_path(net.files.train_net))} has no layer(s) "
                            f"{missing}; expected {LAYERS}")
    if base_path is not None:
        copy_layers(net, mine, base_path)
    # Keep only the weight layers: all `caffe train --weights` reads.
    model = caffe_pb2().NetParameter(name=fresh.name)
    for layer in fresh.layer:
        if len(layer.blobs):
            model.layer.add().CopyFrom(layer)
    try:   # both or neither: init weights without their record are drawn again
        atomic_write(init, model.SerializeToString())
        atomic_write(record, json.dumps(surgery_record(net, seed, model, base_path), indent=1) + "\n")
    except OSError as exc:
        init.unlink(missing_ok=True)
        err = space_error(exc, f"nothing of {net.name}'s surgery was kept; free space and run the same "
                               "command again", where=init)
        if err is None:
            raise
        raise err from None
    return init


# ---------------------------------------------------------------------------- CLI

def _cmd(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    net = plan.net(args.net)
    try:
        with net.run.acquire_lock():
            integrity.claim(plan, net, retrain=False)   # surgery is a first use of the run directory
            integrity.record(plan, net)
            path = make_init(plan, net, seed=args.seed, force=args.force)
    except LockHeld as exc:
        raise TransferError(f"net '{net.name}' is being trained: {exc}") from None
    except OSError as exc:   # (recording the definition on a full disk)
        raise space_error(exc, "free space and run the same command again") or exc from None
    rec = json.loads(net.run.surgery_record.read_text())
    print(f"{shown(path)}: seed {rec['seed']}")
    for layer in rec["layers"]:
        flag = "frozen" if layer["frozen"] else "learns"
        print(f"  {layer['layer']:6} {layer['init']:28} {flag:7} {'x'.join(map(str, layer['shapes'][0])):>16}"
              f"  |W| {layer['norms'][0]:.4g}  |b| {layer['norms'][1]:.4g}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("surgery", help="write a net's init.caffemodel (copied + freshly drawn layers)")
    p.add_argument("net", help="net name (see `transfer plan show`)")
    p.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file (default paper)")
    p.add_argument("--seed", type=argtypes.seed, help="seed for the fresh layers (default: from the net's name)")
    p.add_argument("--force", action="store_true", help="redraw even if init.caffemodel exists")
    p.set_defaults(func=_cmd)
