"""Generated nets: faithful numbers, treatments' multipliers, committed files current."""
from __future__ import annotations

import itertools

import pytest
from google.protobuf import text_format

from transfer.caffe.env import caffe_pb2
from transfer.core.errors import TransferError
from transfer.plan.netfiles import net_files, net_param, to_text, write_plan
from transfer.plan.model import LAYERS
from transfer.plan.load import load_plan

PAPER = load_plan("paper")


def parse(path) -> object:
    return text_format.Parse(path.read_text(), caffe_pb2().NetParameter())


def weight_layers(proto) -> dict:
    return {l.name: l for l in proto.layer if l.name in LAYERS}


def test_committed_paper_files_are_current():
    assert write_plan(PAPER, check=True) == [], "run `make nets` and commit the result"


def test_paper_plan_has_170_nets_with_released_names():
    names = {n.released_name for n in PAPER.nets}
    assert len(PAPER.nets) == 170 and len(names) == 170
    for released in ("half0A", "transfer0A0B_1_3", "transfer-ft1B1A_1_7", "transfernatmanAB_1_2",
                     "nolearn_1_4", "reduced-0100", "netbase", "halfnatmanA"):
        assert released in names


@pytest.mark.parametrize("treatment", sorted({n.treatment for n in PAPER.nets}))
def test_multipliers_of_every_n(treatment):
    for net in [n for n in PAPER.nets if n.treatment == treatment]:
        layers = weight_layers(net_param(net, PAPER.model, train=True))
        assert list(layers) == LAYERS
        frozen = net.n if treatment in ("selffer", "transfer", "random_weights") else 0
        assert net.frozen == frozen
        for i, name in enumerate(LAYERS, start=1):
            mults = [(p.lr_mult, p.decay_mult) for p in layers[name].param]
            expected = [(0, 0), (0, 0)] if i <= frozen else [(1, 1), (2, 0)]
            assert mults == expected, (net.name, name)


def test_caffenet_numbers():
    net = PAPER.net("half0A-3-half0B")
    train = net_param(net, PAPER.model, train=True)
    test = net_param(net, PAPER.model, train=False)
    order = [l.name for l in train.layer]
    assert order == ["data", "conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2",
                     "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5", "fc6", "relu6",
                     "drop6", "fc7", "relu7", "drop7", "fc8", "loss"]
    w = weight_layers(train)
    conv = {k: w[k].convolution_param for k in LAYERS[:5]}
    assert [c.num_output for c in conv.values()] == [96, 256, 384, 384, 256]
    assert [list(c.kernel_size) for c in conv.values()] == [[11], [5], [3], [3], [3]]
    assert [c.group for c in conv.values()] == [1, 2, 1, 2, 2]
    assert [c.bias_filler.value for c in conv.values()] == [0, 1, 0, 1, 1]
    assert w["fc6"].inner_product_param.weight_filler.std == pytest.approx(0.005)
    assert w["fc8"].inner_product_param.num_output == 1000  # as released, though the data has 500 classes
    lrn = {l.name: l.lrn_param for l in train.layer if l.type == "LRN"}
    assert [(p.local_size, round(p.alpha, 6), p.beta) for p in lrn.values()] == [(5, 0.0001, 0.75)] * 2
    drops = [l.dropout_param.dropout_ratio for l in train.layer if l.type == "Dropout"]
    assert drops == [0.5, 0.5]
    tdata, vdata = train.layer[0], test.layer[0]
    assert (tdata.data_param.batch_size, tdata.transform_param.crop_size, tdata.transform_param.mirror) == (256, 227, True)
    assert (vdata.data_param.batch_size, vdata.transform_param.crop_size, vdata.transform_param.mirror) == (50, 227, False)
    assert tdata.data_param.source.endswith("half0B/train_lmdb")
    assert tdata.transform_param.mean_file.endswith("half0A/mean.binaryproto")  # the base's mean
    assert [l.type for l in test.layer][-2:] == ["Accuracy", "SoftmaxWithLoss"]


def test_solver_numbers():
    normal = PAPER.net("base-half0A").solver
    assert (normal.base_lr, normal.stepsize, normal.max_iter, normal.test_iter) == (0.01, 100000, 450000, 1000)
    reduced = PAPER.net("reduced-0100").solver
    assert (reduced.base_lr, reduced.stepsize, reduced.max_iter) == (0.0125, 64000, 200000)
    text = net_files(PAPER, PAPER.net("reduced-0100"))
    solver = next(t for p, t in text.items() if p.name.endswith(".solver.prototxt"))
    parsed = text_format.Parse(solver, caffe_pb2().SolverParameter())
    assert (parsed.lr_policy, parsed.gamma, parsed.momentum, parsed.snapshot) == ("step", pytest.approx(0.1), pytest.approx(0.9), 10000)


def test_class_count_option(tmp_path):
    text = (PAPER.path.read_text().replace("fc8_outputs: 1000", "fc8_outputs: classes"))
    (tmp_path / "p.yaml").write_text(text)
    plan = load_plan(str(tmp_path / "p.yaml"))
    assert plan.net("half0A-1-half0B").fc8_outputs == 500 and plan.net("base-all").fc8_outputs == 1000


@pytest.mark.parametrize("edit, message", [
    (("n: [1, 2, 3, 4, 5, 6, 7]\n    frozen: {splits", "n: [1, 2, 8]\n    frozen: {splits"), "n must be an integer in 1..7"),
    (("fc8_outputs: 1000", "fc8_outputs: 100"), "cannot hold the 500 classes"),
    (("  manmade: 551\n", ""), "dataset 'manmade' is not declared"),
    (("  half0A: 500\n", "  half0A: 499\n"), "datasets.half0A: 499 labels declared, but experiments.random_split "
                                               "makes it a set of 500"),
    (("  crop: 227\n", "  crop: 227\n  weight_std_scal: 4\n"),
     r"model\.weight_std_scal: unknown field 'weight_std_scal' \(did you mean 'weight_std_scale'\?\)"),
])
def test_bad_plans_name_net_and_field(tmp_path, edit, message):
    (tmp_path / "bad.yaml").write_text(PAPER.path.read_text().replace(*edit, 1))
    with pytest.raises(TransferError, match=message):
        load_plan(str(tmp_path / "bad.yaml"))


def test_transfer_without_base_is_refused(tmp_path):
    text = PAPER.path.read_text().replace("    splits: [0, 1, 2, 3]\n    n:", "    splits: [0, 1]\n    n:", 1)
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(TransferError, match=r"net 'half2A-1-half2A': field 'base' names 'base-half2A'"):
        load_plan(str(tmp_path / "bad.yaml"))


# ---------------------------------------------------------------------------- through real Caffe

def _caffe_ready() -> bool:
    try:
        from transfer.caffe.env import caffe_binary
        caffe_binary()
        return True
    except TransferError:
        return False




_ALIASES = itertools.count()


def _tiny_db(root, size: int):
    """A 2-image LMDB of size x size raw Datums and its mean, for pointing data layers at."""
    import lmdb
    import numpy as np
    pb = caffe_pb2()
    db = root / f"db{size}"
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(2):
            img = np.full((3, size, size), 40 * i, np.uint8)
            txn.put(f"{i:08d}".encode(), pb.Datum(channels=3, height=size, width=size, data=img.tobytes(),
                                                  label=i).SerializeToString())
    env.close()
    mean = root / f"mean{size}.binaryproto"
    blob = pb.BlobProto(num=1, channels=3, height=size, width=size)
    blob.data.extend([0.0] * (3 * size * size))
    mean.write_bytes(blob.SerializeToString())
    return db, mean


def _load(caffe, path, db, mean, tmp_path, train: bool):
    """caffe.Net of a generated file, its data layer pointed at a tiny LMDB (batch 2), fillers
    made constant (a full-scale fc6 would draw 38M gaussians per load; shapes are what is checked)."""
    proto = parse(path)
    data = proto.layer[0]
    # This Caffe shares one reader thread among Data layers of the same name and source within a
    # process, and a reader left by a deleted net starves the next: give every load its own path.
    alias = tmp_path / f"{db.name}-{next(_ALIASES)}"
    alias.symlink_to(db)
    data.data_param.source, data.transform_param.mean_file = str(alias), str(mean)
    data.data_param.batch_size = 2
    for layer in proto.layer:
        for param in (layer.convolution_param, layer.inner_product_param):
            if param.HasField("weight_filler"):
                param.weight_filler.type = "constant"
    copy = tmp_path / "net.prototxt"
    copy.write_text(text_format.MessageToString(proto))
    return caffe.Net(str(copy), caffe.TRAIN if train else caffe.TEST)


def sample(plan) -> list:
    """A few nets that cover every treatment and fc8 width of a plan (the exhaustive checks below
    show every other net has their topology)."""
    seen, out = set(), []
    for net in plan.nets:
        if (net.treatment, net.fc8_outputs) not in seen:
            seen.add((net.treatment, net.fc8_outputs))
            out.append(net)
    return out


def _topology(proto) -> list:
    return [(l.name, l.type, tuple(l.bottom), tuple(l.top)) for l in proto.layer]


@pytest.mark.parametrize("plan_name", ["paper", "small"])
def test_every_generated_net_has_one_topology(plan_name):
    """All nets of a plan: the same layers wired the same way as the sampled ones that pycaffe
    loads (below), and the widths of the plan."""
    plan = load_plan(plan_name)
    first: dict[bool, list] = {}
    for net in plan.nets:
        for train in (True, False):
            proto = net_param(net, plan.model, train)
            assert _topology(proto) == first.setdefault(train, _topology(proto)), (net.name, train)
            widths = [l.convolution_param.num_output or l.inner_product_param.num_output
                      for l in proto.layer if l.name in LAYERS]
            assert widths == list(plan.model.widths) + [net.fc8_outputs], net.name


@pytest.mark.parametrize("plan_name", ["paper", "small"])
def test_sampled_files_parse_back_to_themselves(plan_name):
    """What the upgrade tool (checked below with real Caffe) does in C++: read a file and print it."""
    plan = load_plan(plan_name)
    pb = caffe_pb2()
    for net in sample(plan):
        for path, text in net_files(plan, net).items():
            kind = pb.SolverParameter if path.name.endswith(".solver.prototxt") else pb.NetParameter
            assert to_text(text_format.Parse(text, kind())) == text, path


@pytest.mark.requires_caffe
@pytest.mark.parametrize("plan_name", ["paper", "small"])
def test_sampled_nets_load_in_pycaffe(plan_name, tmp_path):
    from transfer.caffe.env import import_caffe
    caffe = import_caffe()
    caffe.set_mode_cpu()
    plan = load_plan(plan_name)
    model = plan.model
    db, mean = _tiny_db(tmp_path, model.image_size)
    widths = model.widths
    side = {"paper": 6, "small": 1}[plan_name]  # pool5: 227 -> 55 -> 27 -> 13 -> 6; 56 -> 12 -> 6 -> 3 -> 1
    nets = sample(plan)
    assert {n.treatment for n in nets} == {n.treatment for n in plan.nets}
    for net in nets:
        files = net_files(plan, net)
        for full, train in zip(net.files.generated()[:2], (True, False)):
            path = full
            if plan_name != "paper":  # the small plan's files are generated, not committed
                full = tmp_path / full.name
                full.write_text(files[path])
            n = _load(caffe, full, db, mean, tmp_path, train)
            assert n.blobs["data"].data.shape == (2, 3, model.crop, model.crop), path
            assert n.blobs["pool5"].data.shape == (2, widths[4], side, side), path
            assert n.blobs["fc8"].data.shape == (2, net.fc8_outputs), path
            assert [k for k in n.params] == LAYERS, path
            if not train:
                assert "accuracy" in n.blobs
    if plan_name == "paper":
        assert {n.fc8_outputs for n in plan.nets} == {1000}


@pytest.mark.requires_caffe
def test_upgrade_tool_leaves_sampled_files_unchanged(tmp_path):
    """Caffe's own upgrade_net_proto_text reads a file of every treatment and writes it back
    identical: the files are in today's format and printed as Caffe prints them."""
    import subprocess
    from transfer.caffe.env import tool
    upgrade = tool("upgrade_net_proto_text")
    paths = [p for n in sample(PAPER) for p in n.files.generated()[:2]]
    assert len(paths) == 2 * len({n.treatment for n in PAPER.nets})
    out = tmp_path / "up.prototxt"
    for path in paths:
        proc = subprocess.run([str(upgrade), str(path), str(out)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert out.read_text() == path.read_text(), f"{path} changes under upgrade_net_proto_text"
