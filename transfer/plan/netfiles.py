"""Caffe 1.0 net and solver files for every net of a plan, built with caffe's protobuf classes.

In the spirit of Caffe's python/caffe/net_spec.py (without loading `_caffe.so`): layers are
declared by small functions (`conv_relu`, `fc_relu_dropout`, ...) that fill protobuf messages
through one helper, `assign`. One CaffeNet definition (LRN after pooling, as released) serves
every treatment and scale: a treatment only changes which layers learn (lr/decay multipliers) and
where data comes from; a scale only changes numbers (crop, widths, batches) taken from the plan.
The numbers and where they come from: docs/FAITHFUL.md.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from ..caffe.env import caffe_pb2
from ..core.errors import Exit, TransferError
from ..core.files import atomic_write
from .model import LAYERS, Net, Plan
from .load import load_plan
from .spec import SOLVER_KEYS, ModelSpec


def assign(msg: Any, **fields: Any) -> Any:
    """Fill a protobuf message from keyword arguments (as net_spec.py's assign_proto): a dict fills
    a sub-message, a list (or a single value) a repeated field, an enum takes its value's name."""
    for key, value in fields.items():
        fd = msg.DESCRIPTOR.fields_by_name[key]
        if fd.label == fd.LABEL_REPEATED:
            target = getattr(msg, key)
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if fd.message_type:
                    assign(target.add(), **item)
                else:
                    target.append(item)
        elif fd.message_type:
            assign(getattr(msg, key), **value)
        else:
            if fd.enum_type and isinstance(value, str):
                value = fd.enum_type.values_by_name[value].number
            setattr(msg, key, value)
    return msg


class NetSpec:
    """A NetParameter grown layer by layer; each layer reads the previous one's top by default."""

    def __init__(self, name: str, std_scale: float, learns: dict[str, bool]):
        self.proto = caffe_pb2().NetParameter(name=name)
        self.top = "data"
        self.std_scale = std_scale   # narrow nets learn only with wider filler stds (a plan number)
        self.learns = learns         # weight layer -> whether it learns (frozen: lr 0)

    def layer(self, name: str, type: str, inplace: bool = False, **params: Any) -> None:
        """A layer on the current top: in place (ReLU, Dropout) or with its own top."""
        tops = params.pop("top", [self.top if inplace else name])
        bottoms = params.pop("bottom", [self.top])
        assign(self.proto.layer.add(), name=name, type=type, bottom=bottoms, top=tops, **params)
        self.top = tops[0]

    def _learned(self, name: str, std: float, bias: float) -> dict[str, Any]:
        # Learned: weights lr 1 / decay 1, bias lr 2 / decay 0. Frozen: everything 0.
        learn = self.learns[name]
        return {"param": [{"lr_mult": 1, "decay_mult": 1}, {"lr_mult": 2, "decay_mult": 0}] if learn else
                [{"lr_mult": 0, "decay_mult": 0}] * 2,
                "fillers": {"weight_filler": {"type": "gaussian", "std": std * self.std_scale},
                            "bias_filler": {"type": "constant", "value": bias}}}

    def conv_relu(self, name: str, width: int, kernel: int, std: float, bias: float, pad: int = 0,
                  stride: int = 1, group: int = 1) -> None:
        p = self._learned(name, std, bias)
        conv = dict(num_output=width, kernel_size=kernel, **p["fillers"])
        # Only what differs from Caffe's defaults is written, as in the released files.
        given, default = {"pad": pad, "stride": stride, "group": group}, {"pad": 0, "stride": 1, "group": 1}
        conv.update({k: v for k, v in given.items() if v != default[k]})
        self.layer(name, "Convolution", param=p["param"], convolution_param=conv)
        self.layer(f"relu{name[-1]}", "ReLU", inplace=True)

    def fc(self, name: str, width: int, std: float, bias: float) -> None:
        p = self._learned(name, std, bias)
        self.layer(name, "InnerProduct", param=p["param"], inner_product_param=dict(num_output=width, **p["fillers"]))

    def fc_relu_dropout(self, name: str, width: int, std: float, bias: float) -> None:
        self.fc(name, width, std, bias)
        self.layer(f"relu{name[-1]}", "ReLU", inplace=True)
        self.layer(f"drop{name[-1]}", "Dropout", inplace=True, dropout_param={"dropout_ratio": 0.5})

    def max_pool(self, name: str) -> None:
        self.layer(name, "Pooling", pooling_param={"pool": "MAX", "kernel_size": 3, "stride": 2})

    def lrn(self, name: str) -> None:
        self.layer(name, "LRN", lrn_param={"local_size": 5, "alpha": 0.0001, "beta": 0.75})


def data_layer(n: NetSpec, net: Net, model: ModelSpec, train: bool) -> None:
    data = {"source": str(net.files.train_data if train else net.files.val_data),
            "batch_size": model.train_batch if train else model.test_batch, "backend": "LMDB"}
    labels = net.files.train_labels if train else net.files.val_labels
    if labels is not None:   # a view: the whole set's LMDB through a label map (the project's Caffe)
        if "label_map_file" not in caffe_pb2().DataParameter.DESCRIPTOR.fields_by_name:
            raise TransferError(f"net '{net.name}' reads a view ({labels}), but this Caffe's Data layer has no "
                                f"label_map_file: rebuild it (`make caffe`)")
        data["label_map_file"] = str(labels)
    n.layer("data", "Data", top=["data", "label"], bottom=[], include={"phase": "TRAIN" if train else "TEST"},
            transform_param={"mirror": train, "crop_size": model.crop, "mean_file": str(net.files.mean)},
            data_param=data)


def net_param(net: Net, model: ModelSpec, train: bool) -> Any:
    """The NetParameter of a net's training (train=True) or validation net: CaffeNet."""
    w = list(model.widths) + [net.fc8_outputs]
    n = NetSpec(net.name, model.weight_std_scale, {name: i > net.frozen for i, name in enumerate(LAYERS, 1)})
    data_layer(n, net, model, train)
    n.conv_relu("conv1", w[0], kernel=11, stride=4, std=0.01, bias=0.0)
    n.max_pool("pool1")
    n.lrn("norm1")
    n.conv_relu("conv2", w[1], kernel=5, pad=2, group=2, std=0.01, bias=1.0)
    n.max_pool("pool2")
    n.lrn("norm2")
    n.conv_relu("conv3", w[2], kernel=3, pad=1, std=0.01, bias=0.0)
    n.conv_relu("conv4", w[3], kernel=3, pad=1, group=2, std=0.01, bias=1.0)
    n.conv_relu("conv5", w[4], kernel=3, pad=1, group=2, std=0.01, bias=1.0)
    n.max_pool("pool5")
    n.fc_relu_dropout("fc6", w[5], std=0.005, bias=1.0)
    n.fc_relu_dropout("fc7", w[6], std=0.005, bias=1.0)
    n.fc("fc8", w[7], std=0.01, bias=0.0)
    if not train:
        n.layer("accuracy", "Accuracy", bottom=["fc8", "label"], top=["accuracy"])
    n.layer("loss", "SoftmaxWithLoss", bottom=["fc8", "label"], top=["loss"])
    return n.proto


def solver_param(net: Net, solver_mode: str) -> Any:
    """The SolverParameter of a net: the plan's solver numbers, its files, its snapshot prefix."""
    return assign(caffe_pb2().SolverParameter(), train_net=str(net.files.train_net),
                  test_net=str(net.files.test_net), snapshot_prefix=str(net.run.plan_snapshot_prefix),
                  solver_mode=solver_mode, **{key: getattr(net.solver, key) for key in SOLVER_KEYS})


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
    return Exit.FAILED if (args.check and changed) else Exit.OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nets", help="generate the prototxt and solver files of a plan")
    psub = p.add_subparsers(dest="nets_command", metavar="ACTION")
    psub.required = True
    w = psub.add_parser("write", help="write prototxt/<plan>/ and solvers/<plan>/ files")
    w.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file (default paper)")
    w.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file differs")
    w.set_defaults(func=_write_cmd)
