"""Caffe is real: the `caffe` binary trains from an LMDB, pycaffe round-trips weights, and the
upgrade tool reads 2014-format prototxt. Uses the Caffe that `make caffe` recorded (or CAFFE_ROOT)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import lmdb
import numpy as np
import pytest

from transfer.caffe import env as caffe_env

pytestmark = pytest.mark.requires_caffe  # runs the caffe binary and pycaffe
CLASSES, SIDE = 4, 8

NET = """name: "tiny"
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{train}" batch_size: 16 backend: LMDB }} }}
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{test}" batch_size: 16 backend: LMDB }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_size: 3 weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "norm1" type: "LRN" bottom: "pool1" top: "norm1" lrn_param {{ local_size: 3 }} }}
layer {{ name: "fc1" type: "InnerProduct" bottom: "norm1" top: "fc1"
  inner_product_param {{ num_output: 16 weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "drop1" type: "Dropout" bottom: "fc1" top: "fc1" dropout_param {{ dropout_ratio: 0.2 }} }}
layer {{ name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
  inner_product_param {{ num_output: {classes} weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "fc2" bottom: "label" top: "accuracy"
  include {{ phase: TEST }} }}
"""

SOLVER = """net: "{net}"
test_iter: 4
test_interval: 20
base_lr: 0.05
momentum: 0.9
weight_decay: 0.0005
lr_policy: "step"
gamma: 0.1
stepsize: 30
display: 5
max_iter: 40
snapshot: 40
snapshot_prefix: "{prefix}"
solver_mode: CPU
random_seed: 1
"""


def write_lmdb(path: Path, n: int, seed: int) -> None:
    """n 1x8x8 uint8 Datums; class k has a bright quadrant k, so a tiny net can learn it."""
    pb2 = caffe_env.caffe_pb2()
    rng = np.random.default_rng(seed)
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(n):
            label = i % CLASSES
            img = rng.integers(0, 60, size=(1, SIDE, SIDE), dtype=np.uint8)
            r, c = divmod(label, 2)
            img[0, r * 4:(r + 1) * 4, c * 4:(c + 1) * 4] += 150
            datum = pb2.Datum(channels=1, height=SIDE, width=SIDE, data=img.tobytes(), label=label)
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())
    env.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tiny")
    write_lmdb(d / "train_lmdb", 256, seed=0)
    write_lmdb(d / "test_lmdb", 64, seed=1)
    net = d / "net.prototxt"
    net.write_text(NET.format(train=d / "train_lmdb", test=d / "test_lmdb", classes=CLASSES))
    (d / "snap").mkdir()
    solver = d / "solver.prototxt"
    solver.write_text(SOLVER.format(net=net, prefix=d / "snap" / "tiny"))
    return {"dir": d, "net": net, "solver": solver}


def run_tool(args: list, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GLOG_logtostderr": "1"}
    env.pop("GLOG_minloglevel", None)  # set by an earlier pycaffe import in this process; keep INFO lines
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_caffe_binary_trains_from_lmdb(tiny):
    proc = run_tool([caffe_env.caffe_binary(), "train", f"--solver={tiny['solver']}"], tiny["dir"])
    log = proc.stderr
    assert proc.returncode == 0, log[-3000:]
    losses = [float(x) for x in re.findall(r"Iteration \d+.*, loss = ([-\d.e+]+)", log)]
    accs = [float(x) for x in re.findall(r"Test net output #0: accuracy = ([\d.e+-]+)", log)]
    assert len(losses) >= 5 and all(np.isfinite(losses))
    assert len(accs) >= 2, "expected TEST phase at iterations 20 and 40"
    assert accs[-1] > 0.5, f"a 4-class quadrant task should be learned by iteration 40, got {accs}"
    assert (tiny["dir"] / "snap" / "tiny_iter_40.caffemodel").is_file()
    assert (tiny["dir"] / "snap" / "tiny_iter_40.solverstate").is_file()


def test_caffe_train_weights_starts_from_given_model(tiny, tmp_path):
    """`caffe train -weights` (the released code's way to copy layers) must load the weights:
    the brocolli tree had dropped it, our build restores it. A net started from the trained
    model tests at iteration 0 as well as the trained one did at its end."""
    trained = tiny["dir"] / "snap" / "tiny_iter_40.caffemodel"
    if not trained.is_file():
        test_caffe_binary_trains_from_lmdb(tiny)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(SOLVER.format(net=tiny["net"], prefix=tmp_path / "ft")
                      .replace("max_iter: 40", "max_iter: 1").replace("base_lr: 0.05", "base_lr: 0"))
    proc = run_tool([caffe_env.caffe_binary(), "train", f"--solver={solver}", f"--weights={trained}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Finetuning from {trained}" in proc.stderr
    first = float(re.findall(r"Test net output #0: accuracy = ([\d.e+-]+)", proc.stderr)[0])
    assert first > 0.5, f"iteration-0 accuracy {first}: the given weights were not loaded"


def test_pycaffe_forward_backward_save_reload(tiny, tmp_path):
    caffe = caffe_env.import_caffe()
    caffe.set_mode_cpu()
    net = caffe.Net(str(tiny["net"]), caffe.TRAIN)
    out = net.forward()
    assert np.isfinite(out["loss"]) and out["loss"] > 0
    assert net.blobs["data"].data.shape == (16, 1, SIDE, SIDE)
    net.backward()
    assert np.abs(net.params["conv1"][0].diff).sum() > 0
    model = tmp_path / "w.caffemodel"
    net.save(str(model))
    fresh = caffe.Net(str(tiny["net"]), caffe.TEST, weights=str(model))
    for name in ("conv1", "fc1", "fc2"):
        for a, b in zip(net.params[name], fresh.params[name]):
            np.testing.assert_array_equal(a.data, b.data)


def test_upgrade_net_proto_text_reads_2014_format(tmp_path):
    old = tmp_path / "old.prototxt"
    old.write_text('name: "old"\ninput: "data"\ninput_dim: 1 input_dim: 1 input_dim: 8 input_dim: 8\n'
                   'layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"\n'
                   '  convolution_param { num_output: 2 kernel_size: 3 } }\n'
                   'layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }\n')
    new = tmp_path / "new.prototxt"
    proc = run_tool([caffe_env.tool("upgrade_net_proto_text"), old, new], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from google.protobuf import text_format
    net = text_format.Parse(new.read_text(), caffe_env.caffe_pb2().NetParameter())
    assert not net.layers, "V1 `layers` should be gone"
    layers = [(lp.name, lp.type) for lp in net.layer if lp.type != "Input"]  # `input:` became a layer
    assert layers == [("conv1", "Convolution"), ("relu1", "ReLU")]


def test_upgrade_solver_proto_text(tmp_path):
    old = tmp_path / "old_solver.prototxt"
    old.write_text('net: "x.prototxt"\nbase_lr: 0.01\nsolver_type: NESTEROV\n')
    new = tmp_path / "new_solver.prototxt"
    proc = run_tool([caffe_env.tool("upgrade_solver_proto_text"), old, new], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'type: "Nesterov"' in new.read_text()
