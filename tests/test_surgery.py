"""Weight surgery with pycaffe: copied layers bit-exact, fresh layers from the fillers and the seed,
clear refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from transfer.core.errors import TransferError
from transfer.core.files import shown
from transfer.plan.model import LAYERS

import tinyrun  # noqa: E402

pytestmark = pytest.mark.requires_caffe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return tinyrun.trained_plan(tmp_path_factory)


@pytest.fixture
def fresh(tmp_path, tmp_path_factory):
    """An untrained copy of the tiny plan (net files written, nothing trained)."""
    return tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory))


def test_copied_layers_equal_base_final_weights(trained):
    from transfer.caffe.caffemodel import identical_layers
    plan, res = trained
    assert res.returncode == 0, res.stdout
    for net in plan.nets:
        if not net.copied:
            continue
        same = identical_layers(plan.net(net.base).run.final_weights, net.run.init_weights)
        assert [l for l in LAYERS if same[l]] == LAYERS[:net.copied], net.name


def test_surgery_record(trained):
    from transfer.caffe.caffemodel import layer_arrays
    from transfer.train.surgery import default_seed
    plan, _ = trained
    net = plan.net("half0A-6-half0B-ft")
    rec = json.loads(net.run.surgery_record.read_text())
    assert rec["seed"] == default_seed(net) and rec["base"] == "base-half0A"
    assert rec["copied"] == LAYERS[:6] and rec["frozen"] == []
    assert rec["base_weights"] == shown(plan.net("base-half0A").run.final_weights)
    arrays = layer_arrays(net.run.init_weights)
    for layer in rec["layers"]:
        name = layer["layer"]
        assert layer["init"] == ("copied from base-half0A" if name in LAYERS[:6] else "random (filler)")
        assert layer["shapes"] == [list(a.shape) for a in arrays[name]]
        assert layer["norms"][0] == pytest.approx(float(np.linalg.norm(arrays[name][0])), rel=1e-5)
    # fc8 has one output per class of half0B; fc8 bias is drawn from a constant-0 filler
    assert rec["layers"][-1]["shapes"] == [[4, 1024], [4]] and rec["layers"][-1]["norms"][1] == 0.0


def test_fresh_layers_follow_fillers_and_seed(fresh):
    from transfer.caffe.caffemodel import identical_layers, layer_arrays
    from transfer.train.surgery import draw_fresh
    net = fresh.net("base-half0A")
    a, b, c = draw_fresh(fresh, net, 7), draw_fresh(fresh, net, 7), draw_fresh(fresh, net, 8)
    assert all(identical_layers(a, b).values())
    assert not any(identical_layers(a, c, LAYERS).values())
    arrays = layer_arrays(a)
    assert arrays["conv1"][0].shape == (24, 3, 11, 11)
    scale = fresh.model.weight_std_scale  # the small profiles widen the stds
    assert abs(float(arrays["conv1"][0].std()) - 0.01 * scale) < 0.001 * scale    # gaussian std 0.01
    assert abs(float(arrays["fc6"][0].std()) - 0.005 * scale) < 0.0005 * scale    # gaussian std 0.005
    assert np.all(arrays["conv2"][1] == 1) and np.all(arrays["conv3"][1] == 0)


def test_refuses_unfinished_base(fresh):
    from transfer.train.surgery import make_init
    net = fresh.net("half0A-2-half0B")
    with pytest.raises(TransferError, match=r"'half0A-2-half0B' copies layers 1\.\.2 from 'base-half0A', "
                                            r"which is not finished"):
        make_init(fresh, net)
    assert not net.run.init_weights.exists()
    res = tinyrun.run_cli("surgery", net.name, "--plan", str(fresh.path))
    assert res.returncode == 2 and "not finished" in res.stderr


def test_refuses_shape_mismatch(fresh):
    from transfer.caffe.env import caffe_pb2
    from transfer.train.surgery import draw_fresh, make_init
    base = fresh.net("base-half0A")
    model = draw_fresh(fresh, base, 1)
    conv2 = next(l for l in model.layer if l.name == "conv2")
    del conv2.blobs[0].shape.dim[:]
    conv2.blobs[0].shape.dim.extend([32, 12, 5, 5])        # a base trained with other widths
    conv2.blobs[0].data[:] = [0.0] * (32 * 12 * 25)
    path = base.run.final_weights
    path.parent.mkdir(parents=True)
    path.write_bytes(model.SerializeToString())
    assert isinstance(model, caffe_pb2().NetParameter)
    with pytest.raises(TransferError, match=r"'half0A-2-half0B': layer conv2 cannot be copied from "
                                            r"'base-half0A': shapes \[\(32, 12, 5, 5\), \(64,\)\].*"
                                            r"\[\(64, 12, 5, 5\), \(64,\)\]"):
        make_init(fresh, fresh.net("half0A-2-half0B"))


def test_random_weights_net_copies_nothing(tmp_path, tmp_path_factory):
    from transfer.train.surgery import make_init
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory),
                                   datasets={"all": 8},
                                   experiments={"random_weights": {"dataset": "all", "n": [3]}})
    net = plan.net("random-3")
    assert net.frozen == 3 and net.copied == 0
    make_init(plan, net)   # needs no base
    rec = json.loads(net.run.surgery_record.read_text())
    assert rec["copied"] == [] and rec["base"] is None and rec["frozen"] == LAYERS[:3]
    assert all(l["init"] == "random (filler)" for l in rec["layers"])
