"""Caffe 1.0 net and solver files for every net of a plan, built with caffe's protobuf classes.

One CaffeNet definition (LRN after pooling, as released) serves every treatment and scale:
a treatment only changes which layers learn (lr/decay multipliers) and where data comes from;
a scale only changes numbers (crop, widths, batches) taken from the plan.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from .caffe_env import caffe_pb2
from .files import atomic_write
from .plan import LAYERS, Net, Plan, load_plan
from .spec import ModelSpec

# Per weight layer: kind, kernel, stride, pad, group, weight std, bias value (FAITHFUL_SPEC.md).
ARCH: dict[str, tuple[str, int, int, int, int, float, float]] = {
    "conv1": ("conv", 11, 4, 0, 1, 0.01, 0.0),
    "conv2": ("conv", 5, 1, 2, 2, 0.01, 1.0),
    "conv3": ("conv", 3, 1, 1, 1, 0.01, 0.0),
    "conv4": ("conv", 3, 1, 1, 2, 0.01, 1.0),
    "conv5": ("conv", 3, 1, 1, 2, 0.01, 1.0),
    "fc6": ("fc", 0, 0, 0, 0, 0.005, 1.0),
    "fc7": ("fc", 0, 0, 0, 0, 0.005, 1.0),
    "fc8": ("fc", 0, 0, 0, 0, 0.01, 0.0),
}
POOL_AFTER = {"conv1": ("pool1", "norm1"), "conv2": ("pool2", "norm2"), "conv5": ("pool5", None)}
DROPOUT_AFTER = {"fc6": "drop6", "fc7": "drop7"}


def _param(learn: bool) -> list[dict[str, float]]:
    # Learned: weights lr 1 / decay 1, bias lr 2 / decay 0. Frozen: everything 0.
    if learn:
        return [{"lr_mult": 1, "decay_mult": 1}, {"lr_mult": 2, "decay_mult": 0}]
    return [{"lr_mult": 0, "decay_mult": 0}, {"lr_mult": 0, "decay_mult": 0}]


def _data_layer(pb, net: Net, model: ModelSpec, train: bool) -> Any:
    layer = pb.LayerParameter(name="data", type="Data", top=["data", "label"])
    layer.include.add(phase=pb.TRAIN if train else pb.TEST)
    layer.transform_param.mirror = train
    layer.transform_param.crop_size = model.crop
    layer.transform_param.mean_file = str(net.files.mean)
    layer.data_param.source = str(net.files.train_data if train else net.files.val_data)
    layer.data_param.batch_size = model.train_batch if train else model.test_batch
    layer.data_param.backend = pb.DataParameter.LMDB
    return layer


def net_param(net: Net, model: ModelSpec, train: bool) -> Any:
    """The NetParameter of a net's training (train=True) or validation net."""
    pb = caffe_pb2()
    widths = list(model.widths) + [net.fc8_outputs]
    # Narrow nets pass too little signal through 8 layers of the ImageNet stds to learn in a few
    # hundred iterations; the small profiles scale every weight std (a number, not other code).
    std_scale = model.weight_std_scale
    proto = pb.NetParameter(name=net.name)
    proto.layer.append(_data_layer(pb, net, model, train))
    bottom = "data"
    for i, (lname, width) in enumerate(zip(LAYERS, widths), start=1):
        kind, kernel, stride, pad, group, std, bias = ARCH[lname]
        learn = i > net.frozen
        if kind == "conv":
            layer = pb.LayerParameter(name=lname, type="Convolution", bottom=[bottom], top=[lname])
            cp = layer.convolution_param
            cp.num_output = width
            cp.kernel_size.append(kernel)
            if pad:
                cp.pad.append(pad)
            if stride > 1:
                cp.stride.append(stride)
            if group > 1:
                cp.group = group
            fill_w, fill_b = cp.weight_filler, cp.bias_filler
        else:
            layer = pb.LayerParameter(name=lname, type="InnerProduct", bottom=[bottom], top=[lname])
            ip = layer.inner_product_param
            ip.num_output = width
            fill_w, fill_b = ip.weight_filler, ip.bias_filler
        for spec in _param(learn):
            layer.param.add(**spec)
        fill_w.type, fill_w.std = "gaussian", std * std_scale
        fill_b.type, fill_b.value = "constant", bias
        proto.layer.append(layer)
        bottom = lname
        if lname == "fc8":
            break
        relu = f"relu{lname[-1]}"
        proto.layer.add(name=relu, type="ReLU", bottom=[lname], top=[lname])
        if lname in POOL_AFTER:
            pool, norm = POOL_AFTER[lname]
            p = proto.layer.add(name=pool, type="Pooling", bottom=[lname], top=[pool])
            p.pooling_param.pool = pb.PoolingParameter.MAX
            p.pooling_param.kernel_size = 3
            p.pooling_param.stride = 2
            bottom = pool
            if norm:
                n = proto.layer.add(name=norm, type="LRN", bottom=[pool], top=[norm])
                n.lrn_param.local_size = 5
                n.lrn_param.alpha = 0.0001
                n.lrn_param.beta = 0.75
                bottom = norm
        if lname in DROPOUT_AFTER:
            d = proto.layer.add(name=DROPOUT_AFTER[lname], type="Dropout", bottom=[lname], top=[lname])
            d.dropout_param.dropout_ratio = 0.5
    if not train:
        proto.layer.add(name="accuracy", type="Accuracy", bottom=["fc8", "label"], top=["accuracy"])
    proto.layer.add(name="loss", type="SoftmaxWithLoss", bottom=["fc8", "label"], top=["loss"])
    return proto


def solver_param(net: Net, solver_mode: str) -> Any:
    pb = caffe_pb2()
    s = net.solver
    proto = pb.SolverParameter(train_net=str(net.files.train_net))
    proto.test_net.append(str(net.files.test_net))
    proto.test_iter.append(s.test_iter)
    proto.test_interval = s.test_interval
    proto.base_lr = s.base_lr
    proto.lr_policy = s.lr_policy
    proto.gamma = s.gamma
    proto.stepsize = s.stepsize
    proto.display = s.display
    proto.max_iter = s.max_iter
    proto.momentum = s.momentum
    proto.weight_decay = s.weight_decay
    proto.snapshot = s.snapshot
    proto.snapshot_prefix = str(net.run.plan_snapshot_prefix)
    proto.solver_mode = {"CPU": pb.SolverParameter.CPU, "GPU": pb.SolverParameter.GPU}[solver_mode]
    return proto


_WHOLE_FLOAT = re.compile(r"^(\s*\w+: -?\d+)\.0$", re.MULTILINE)


def to_text(proto: Any) -> str:
    # Python's text format prints whole floats as `0.0`; Caffe's C++ printer (and so
    # upgrade_net_proto_text) prints `0`. Match C++ so the upgrade tool leaves files unchanged.
    return _WHOLE_FLOAT.sub(r"\1", text_format.MessageToString(proto))


def net_files(plan: Plan, net: Net) -> dict[Path, str]:
    """The three generated files of a net: path -> text."""
    train, test, solver = net.files.generated()
    return {
        train: to_text(net_param(net, plan.model, train=True)),
        test: to_text(net_param(net, plan.model, train=False)),
        solver: to_text(solver_param(net, plan.solver_mode)),
    }


def _write_atomic(path: Path, text: str) -> bool:
    """Write unless unchanged (keeps mtimes, so make and readers see no spurious change)."""
    if path.is_file() and path.read_text() == text:
        return False
    atomic_write(path, text)
    return True


def write_plan(plan: Plan, check: bool = False) -> list[Path]:
    """Write every net's files; returns the paths that changed (with check=True, writes nothing)."""
    changed = []
    for net in plan.nets:
        for path, text in net_files(plan, net).items():
            if check:
                if not path.is_file() or path.read_text() != text:
                    changed.append(path)
            elif _write_atomic(path, text):
                changed.append(path)
    return changed


def _write_cmd(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    changed = write_plan(plan, check=args.check)
    verb = "differ" if args.check else "written"
    print(f"plan {plan.name}: {len(plan.nets)} nets, {len(changed)} files {verb}")
    for path in changed[:20]:
        print(f"  {path}")
    return 1 if (args.check and changed) else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nets", help="generate the prototxt and solver files of a plan")
    psub = p.add_subparsers(dest="nets_command", metavar="ACTION")
    psub.required = True
    w = psub.add_parser("write", help="write prototxt/<plan>/ and solvers/<plan>/ files")
    w.add_argument("--plan", default="paper")
    w.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file differs")
    w.set_defaults(func=_write_cmd)
