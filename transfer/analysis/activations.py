"""Per-batch Gram matrices of every layer of a trained net on an image set, computed with pycaffe and
cached in the net's run directory, so that any pair's CKA can be computed later without Caffe.

What is compared at each layer is the layer's top blob after a TEST-phase forward pass: in the
generated CaffeNet the ReLU (and, for fc6 and fc7, the Dropout) work in place, so conv1..fc7 hold the
rectified activations, what the next layer reads (TEST-phase Dropout passes them unchanged); fc8 holds
the logits. Pre-ReLU values are never kept by Caffe here, and a unit's sign below zero does not reach
the next layer, so the rectified values are the representation a layer hands on.

The net is the run's copy of its test net (`test.prototxt`, else the plan's file) with its Data layer
replaced by an Input layer (a deploy variant) and the layers that read labels left out; images get the
net's own TEST transform (imageset.EvalTransform). For each batch of b images and each layer, the
b x b Gram matrix X X^T (float64) is kept: N/b * b^2 = N*b numbers a layer, never the activations.

Each net runs in a child process: a fatal Caffe CHECK (weights that do not fit the net file, a damaged
file) ends the child, and comes back as an error naming the net and Caffe's message. GPU mode is set in
the child only, so the parent never holds a CUDA context across fork.
"""
from __future__ import annotations

import faulthandler
import hashlib
import json
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import text_format

from ..caffe_env import caffe_pb2, import_caffe
from ..caffemodel import learned_layers, read_model
from ..errors import TransferError
from ..files import digest, publish, repo_path, shown
from ..logs import describe_exit, first_error
from ..plan import LAYERS, Net
from .cka import gram
from .imageset import EvalTransform, ImageSet, batches, transform_of

# Bumped whenever what a cached Gram matrix means changes (the blob read, the transform, the dtype).
REPRESENTATION = "top blob after in-place ReLU/Dropout, TEST phase; fc8 logits; float64 X X^T per batch"
CACHE_VERSION = 1
DROPPED_TOPS = ("label",)


@dataclass(frozen=True)
class Grams:
    """One net's per-batch Gram matrices: layer -> (batches, b, b), and how they were made."""

    layers: dict[str, np.ndarray]
    meta: dict[str, Any]


def net_definition(net: Net) -> Path:
    """The test net the run trained with (its run copy), else the plan's generated file."""
    run_copy = net.run.net_copy("test")
    path = run_copy if run_copy.is_file() else repo_path(net.files.test_net)
    if not path.is_file():
        raise TransferError(f"net '{net.name}': no test net file ({shown(path)}); run `transfer nets write`")
    return path


def deploy(test_net: Path, batch: int, channels: int) -> tuple[str, EvalTransform]:
    """The test net as a deploy net of `batch` images (Input layer, no label readers), and the
    transform its TEST-phase Data layer would apply."""
    pb = caffe_pb2()
    proto = pb.NetParameter()
    try:
        text_format.Merge(test_net.read_text(), proto)
    except text_format.ParseError as exc:
        raise TransferError(f"{shown(test_net)}: not a readable net file ({exc})") from None
    out = pb.NetParameter(name=proto.name)
    transform, dropped = None, set(DROPPED_TOPS)
    for layer in proto.layer:
        phases = [r.phase for r in layer.include if r.HasField("phase")]
        if phases and pb.TEST not in phases:
            continue
        if layer.type in ("Data", "ImageData"):
            transform = transform_of(layer.transform_param, shown(test_net))
            size = transform.crop
            if not size:
                raise TransferError(f"{shown(test_net)}: the Data layer has no crop_size; the image size "
                                    "of the deploy net is not known")
            inp = out.layer.add(name=layer.name, type="Input", top=[layer.top[0]])
            inp.input_param.shape.add(dim=[batch, channels, size, size])
            dropped.update(layer.top[1:])
        elif set(layer.bottom) & dropped:
            dropped.update(layer.top)   # accuracy, loss: they read labels
        else:
            out.layer.add().CopyFrom(layer)
    if transform is None:
        raise TransferError(f"{shown(test_net)}: no TEST-phase Data layer to take the transform from")
    return text_format.MessageToString(out), transform


def cache_identity(net: Net, weights: Path, images: ImageSet, layers: list[str]) -> dict[str, Any]:
    """Everything a cached file's numbers depend on (its name is a hash of this)."""
    test_net = net_definition(net)
    _, transform = deploy(test_net, images.batch, images.shape[0])
    mean_path = repo_path(transform.mean_file) if transform.mean_file else None
    return {"version": CACHE_VERSION, "representation": REPRESENTATION, "net": net.name,
            "weights": shown(weights), "weights_sha256": sha256_of(weights),
            "images": images.to_json(), "layers": list(layers),
            "mean_sha256": sha256_of(mean_path) if mean_path else None,
            "transform": {"crop": transform.crop, "scale": transform.scale,
                          "mean_values": list(transform.mean_values)}}


_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """A file's sha256, computed once per process for a given size and mtime (weights are large)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = digest(path)
    return _DIGESTS[key]


def cache_path(net: Net, images: ImageSet, identity: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return net.run.analysis_dir / f"{_prefix(identity, images)}{key}.npz"


def _prefix(identity: dict[str, Any], images: ImageSet) -> str:
    # one cache file per (weights file, image set): a newer one replaces files of older weights
    which = "init" if Path(identity["weights"]).name == "init.caffemodel" else "final"
    return f"grams-{which}-{images.key}-"


def load_cached(path: Path, identity: dict[str, Any]) -> Grams | None:
    """The cached Gram matrices at `path` when they were made from exactly `identity`."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("identity") != identity:
                return None
            return Grams({l: data[f"gram_{l}"] for l in identity["layers"]}, meta)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):   # damaged or foreign: computed again
        return None


def _save(path: Path, grams: dict[str, np.ndarray], meta: dict[str, Any], stale_prefix: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **{f"gram_{l}": g for l, g in grams.items()})
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    for old in path.parent.glob(f"{stale_prefix}*.npz"):
        if old != path:
            old.unlink(missing_ok=True)   # the same image set under weights that are no longer the net's


def compute(test_net: Path, weights: Path, images: ImageSet, layers: list[str],
            gpu: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Run the net on every batch of the image set (pycaffe, this process): Gram matrices per layer
    and the seconds spent reading, in forward passes and in Gram products."""
    caffe = import_caffe()
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    text, transform = deploy(test_net, images.batch, images.shape[0])
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", prefix="deploy-") as fh:
        fh.write(text)
        fh.flush()
        cnet = caffe.Net(fh.name, str(weights), caffe.TEST)
    missing = [l for l in layers if l not in cnet.blobs]
    if missing:
        raise TransferError(f"{shown(test_net)} has no blob(s) {missing}")
    out = {l: np.empty((images.batches, images.batch, images.batch)) for l in layers}
    times = {"read": 0.0, "forward": 0.0, "gram": 0.0}
    t = time.perf_counter()
    for i, raw in enumerate(batches(images)):
        cnet.blobs["data"].data[...] = transform(raw)
        t1 = time.perf_counter()
        cnet.forward()
        t2 = time.perf_counter()
        for l in layers:
            out[l][i] = gram(cnet.blobs[l].data)
        t3 = time.perf_counter()
        times["read"] += t1 - t
        times["forward"] += t2 - t1
        times["gram"] += t3 - t2
        t = time.perf_counter()
    return out, {k: round(v, 4) for k, v in times.items()}


def _check_weights(net: Net, weights: Path, layers: list[str]) -> None:
    """Refuse, with the file named, weights Caffe would abort on (before any child starts)."""
    if not weights.is_file():
        raise TransferError(f"net '{net.name}': {shown(weights)} does not exist")
    have = learned_layers(read_model(weights))
    absent = [l for l in LAYERS if l in layers and l not in have]
    if absent:
        raise TransferError(f"net '{net.name}': {shown(weights)} has no weights for layer(s) {absent}")


def net_grams(net: Net, weights: Path, images: ImageSet, layers: list[str] = LAYERS,
              gpu: int | None = None) -> Grams:
    """The net's Gram matrices on `images`: from the cache, else computed (in a child) and cached."""
    _check_weights(net, weights, layers)
    identity = cache_identity(net, weights, images, layers)
    path = cache_path(net, images, identity)
    cached = load_cached(path, identity)
    if cached is not None:
        return cached
    import_caffe()   # once, here: each child inherits the loaded module (no CUDA context is made by it)
    _run_child(net, net_definition(net), weights, images, layers, gpu, path, identity)
    cached = load_cached(path, identity)
    if cached is None:
        raise TransferError(f"net '{net.name}': {shown(path)} was not written")
    cached.meta["fresh"] = True   # computed by this call, not read back
    return cached


def _run_child(net: Net, test_net: Path, weights: Path, images: ImageSet, layers: list[str],
               gpu: int | None, path: Path, identity: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="transfer-analysis-") as tmp:
        output = Path(tmp) / "caffe.log"
        pid = os.fork()
        if pid == 0:   # the child: pycaffe, its glog lines into `output`
            code = 1
            faulthandler.disable()   # Caffe's abort is reported from the log, not as a Python dump
            try:
                fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 2)
                t0 = time.perf_counter()
                grams, times = compute(test_net, weights, images, layers, gpu)
                times["total"] = round(time.perf_counter() - t0, 4)
                _save(path, grams, {"identity": identity, "seconds": times,
                                    "device": "CPU" if gpu is None else f"GPU {gpu}"},
                      _prefix(identity, images))
                code = 0
            except BaseException as exc:  # noqa: BLE001 (reported through the output file)
                os.write(2, f"E {type(exc).__name__}: {exc}\n".encode())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            first = first_error(output)
            why = (first.text + (f" [{first.where}]" if first.where else "")) if first else \
                (output.read_text(errors="replace").strip()[-500:] or "no message")
            raise TransferError(f"net '{net.name}': activations of {shown(weights)} on {images.name} failed "
                                f"({describe_exit(rc)}): {why}")
