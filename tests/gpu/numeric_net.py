"""One forward and backward pass of a small net through pycaffe, every output and gradient saved.

The net has the paper's kinds of layers, dropout left out: max pooling (on the input, whose values
are exact everywhere, so every device routes the gradient through the same maxima), convolutions
(the second and third grouped), LRN, average pooling, an inner product and the softmax loss. Weights,
input and labels come from a fixed seed, so every run computes the same function on the same numbers;
only the device, the engine of the convolution, pooling and LRN layers, and the precision (from the
environment: transfer/caffe/precision.py) differ. No ReLU and no max pooling after a convolution:
their kinks would turn rounding differences into a different gradient path. With `engine: CUDNN`
the convolutions, the LRN and the average pooling run cuDNN's kernels; max pooling stays Caffe's own
(its layer factory keeps it so whatever the engine).

    python numeric_net.py --out FILE.npz [--gpu K] [--engine CUDNN|CAFFE|DEFAULT]

FILE.npz holds "top:<blob>" (forward output of every blob) and "grad:<layer>:<i>" (the gradient of
every parameter), and "grad:data" (the input's, through the max pooling).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

SEED = 20140101
BATCH, SIZE, CLASSES = 8, 32, 10
ENGINE_LAYERS = ("pool0", "conv1", "norm1", "conv2", "pool2", "conv3")


def net_text(engine: str) -> str:
    """The prototxt, with `engine` set on the layers that have one."""
    eng = {k: f"engine: {engine}" if engine != "DEFAULT" else "" for k in ("c", "p", "l")}
    return f"""name: "numeric"
force_backward: true
layer {{ name: "data" type: "Input" top: "data" top: "label"
  input_param {{ shape {{ dim: {BATCH} dim: 3 dim: {SIZE * 2} dim: {SIZE * 2} }} shape {{ dim: {BATCH} }} }} }}
layer {{ name: "pool0" type: "Pooling" bottom: "data" top: "pool0"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 {eng['p']} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "pool0" top: "conv1"
  convolution_param {{ num_output: 32 kernel_size: 5 pad: 2 {eng['c']} }} }}
layer {{ name: "norm1" type: "LRN" bottom: "conv1" top: "norm1"
  lrn_param {{ local_size: 5 alpha: 1.0 beta: 0.75 {eng['l']} }} }}
layer {{ name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2"
  convolution_param {{ num_output: 64 kernel_size: 3 pad: 1 group: 2 {eng['c']} }} }}
layer {{ name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param {{ pool: AVE kernel_size: 2 stride: 2 {eng['p']} }} }}
layer {{ name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3"
  convolution_param {{ num_output: 64 kernel_size: 3 pad: 1 group: 4 {eng['c']} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "conv3" top: "fc"
  inner_product_param {{ num_output: {CLASSES} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }}
"""


def fill(net, rng: np.random.Generator) -> None:
    """Weights (He-scaled, so activations keep their size through the layers), input and labels."""
    for name, params in net.params.items():
        w = params[0].data
        fan_in = int(np.prod(w.shape[1:]))
        w[...] = rng.standard_normal(w.shape) * np.sqrt(2.0 / fan_in)
        if len(params) > 1:
            params[1].data[...] = rng.standard_normal(params[1].data.shape) * 0.1
    data = rng.standard_normal(net.blobs["data"].data.shape).astype(np.float32)
    # The max pooling must route the gradient the same way everywhere: no window of the input may
    # hold its maximum twice (a tie would leave the choice to each implementation).
    windows = np.sort(data.reshape(BATCH, 3, SIZE, 2, SIZE, 2).transpose(0, 1, 2, 4, 3, 5)
                      .reshape(-1, 4), axis=1)
    if (windows[:, -1] == windows[:, -2]).any():
        raise SystemExit(f"numeric_net: seed {SEED} gives a tie in a max-pooling window; choose another")
    net.blobs["data"].data[...] = data
    net.blobs["label"].data[...] = rng.integers(0, CLASSES, BATCH)


def run(gpu: int | None, engine: str) -> dict[str, np.ndarray]:
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe  # noqa: PLC0415
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    with tempfile.TemporaryDirectory(prefix="numeric-") as tmp:
        path = Path(tmp) / "net.prototxt"
        path.write_text(net_text(engine))
        net = caffe.Net(str(path), caffe.TRAIN)
    fill(net, np.random.default_rng(SEED))
    net.forward()
    net.backward()
    out = {f"top:{name}": blob.data.copy() for name, blob in net.blobs.items() if name != "label"}
    out["grad:data"] = net.blobs["data"].diff.copy()
    for name, params in net.params.items():
        for i, p in enumerate(params):
            out[f"grad:{name}:{i}"] = p.diff.copy()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gpu", type=int, help="GPU id (default: the CPU)")
    ap.add_argument("--engine", choices=("CUDNN", "CAFFE", "DEFAULT"), default="DEFAULT")
    a = ap.parse_args()
    arrays = run(a.gpu, a.engine)
    bad = [k for k, v in arrays.items() if not np.isfinite(v).all()]
    if bad:
        sys.exit(f"numeric_net: non-finite values in {', '.join(bad)}")
    np.savez(a.out, **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
