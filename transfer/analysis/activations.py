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

The forward runs happen in child processes (worker.py).
"""
from __future__ import annotations

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

from ..caffe.env import caffe_pb2, import_caffe
from ..caffe.caffemodel import learned_layers, read_model
from ..core.errors import TransferError
from ..core.files import digest, publish, repo_path, shown
from ..plan.model import LAYERS, Net
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


def check_weights(net: Net, weights: Path, layers: list[str]) -> None:
    """Refuse, with the file named, weights Caffe would abort on (before any child starts)."""
    if not weights.is_file():
        raise TransferError(f"net '{net.name}': {shown(weights)} does not exist")
    have = learned_layers(read_model(weights))
    absent = [l for l in LAYERS if l in layers and l not in have]
    if absent:
        raise TransferError(f"net '{net.name}': {shown(weights)} has no weights for layer(s) {absent}")


@dataclass(frozen=True)
class Job:
    """One net's forward run on one image set, and the cache file it fills."""

    net: Net
    weights: Path
    images: ImageSet
    layers: tuple[str, ...]
    path: Path
    identity: dict[str, Any]


def job(net: Net, weights: Path, images: ImageSet, layers: list[str] = LAYERS) -> Job:
    """The job of a net's weights on an image set (weights checked, cache file named)."""
    check_weights(net, weights, list(layers))
    identity = cache_identity(net, weights, images, list(layers))
    return Job(net, weights, images, tuple(layers), cache_path(net, images, identity), identity)


def read_meta(path: Path) -> dict[str, Any]:
    """The record of a cache file alone (how it was made, how long it took); {} when unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return {}


def is_cached(j: Job) -> bool:
    """Whether the job's cache file holds what the job would compute."""
    return read_meta(j.path).get("identity") == j.identity


def run_and_save(j: Job, gpu: int | None) -> None:
    """In a child: compute the job and write its cache file (atomically)."""
    t0 = time.perf_counter()
    grams, times = compute(net_definition(j.net), j.weights, j.images, list(j.layers), gpu)
    times["total"] = round(time.perf_counter() - t0, 4)
    _save(j.path, grams, {"identity": j.identity, "seconds": times,
                          "device": "CPU" if gpu is None else f"GPU {gpu}"}, _prefix(j.identity, j.images))
