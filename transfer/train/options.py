"""How nets train: one frozen `RunOptions`, built once where a command starts and handed down.

The plan gives the defaults (precision, determinism, CPU or GPU); the command line overrides some of
them (`RunOptions.of(plan, precision=..., gpus=...)`, only what was given); every value is checked
here, once. The runner, each `transfer train` it starts (`train_args`: the resolved values, so a
child computes exactly as its parent decided) and the SLURM job scripts receive the object, never
the raw options. (As in detectron2/fvcore configs: defaults, then overrides, then frozen.)
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..caffe import precision as precision_
from ..caffe.precision import PrecisionSpec
from ..core.console import stage
from ..core.errors import TransferError
from ..plan.model import Plan
from ..plan.placement import add_placement_options
from ..plan.schedule import parse_net_gpus

PROGRESS_EVERY_S = 60.0
log = stage("train")


def per_gpu_batch(batch: int, gpus: int) -> int:
    """Caffe's multi-GPU training (P2PSync) runs the net's whole batch on every GPU and sums the
    gradients: the effective batch is batch_size x GPUs. The paper's effective batch (256) is kept
    by giving each GPU batch / gpus images."""
    if gpus < 1 or batch % gpus:
        raise TransferError(f"--gpu: a train batch of {batch} cannot be split evenly over {gpus} GPUs "
                            f"(use a number of GPUs that divides {batch})")
    return batch // gpus


@dataclass(frozen=True)
class Device:
    """Where caffe trains: mode CPU or GPU, the GPUs' numbers (several: one net on all of them), and
    how it computes."""

    mode: str
    gpus: tuple[int, ...] = ()
    precision: PrecisionSpec = PrecisionSpec()

    @property
    def gpu(self) -> int | None:
        return self.gpus[0] if self.gpus else None

    def __str__(self) -> str:
        return self.mode if not self.gpus else f"{self.mode} {','.join(map(str, self.gpus))}"


@dataclass(frozen=True)
class RunOptions:
    """A run's options. gpus: `transfer train`, the net's GPUs; `transfer run`, this machine's GPUs.
    nets_per_gpu: K, or "auto" (the simulator's choice); net_gpus: (name pattern, GPUs) pairs."""

    precision: PrecisionSpec = PrecisionSpec()
    cpu: bool = False
    gpus: tuple[int, ...] = ()
    jobs: int = 1
    nets_per_gpu: int | str = 1
    net_gpus: tuple[tuple[str, int], ...] = ()
    multi_gpu: bool = False
    figures: Path | None = None
    max_seconds: float | None = None
    progress_every: float = PROGRESS_EVERY_S
    retrain: bool = False               # start over where a run directory holds another definition

    def __post_init__(self) -> None:
        if self.cpu and self.gpus:
            raise TransferError("give --gpu/--gpus or --cpu, not both")
        if self.jobs < 1:
            raise TransferError(f"--jobs must be at least 1, not {self.jobs}")
        if self.nets_per_gpu != "auto" and (not isinstance(self.nets_per_gpu, int) or self.nets_per_gpu < 1):
            raise TransferError(f"--nets-per-gpu {self.nets_per_gpu!r}: expected a positive integer or 'auto'")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise TransferError(f"--max-seconds must be positive, not {self.max_seconds}")
        if self.progress_every < 0:
            raise TransferError(f"--progress-every must not be negative, not {self.progress_every}")
        placing = self.nets_per_gpu != 1 or self.net_gpus or self.multi_gpu
        if placing and self.cpu:
            raise TransferError("--nets-per-gpu, --net-gpus and --multi-gpu need --gpus; on the CPU, --jobs N "
                                "trains N nets at once")

    @classmethod
    def of(cls, plan: Plan, **given: Any) -> RunOptions:
        """The plan's defaults with the options given (None: not given); precision and deterministic
        override the plan's `precision` and `deterministic`."""
        given = {k: v for k, v in given.items() if v is not None}
        spec = precision_.choose(plan.precision, given.pop("precision", None), given.pop("deterministic", None))
        return cls(precision=spec, **given)

    def device(self, plan: Plan) -> Device:
        """Where one net trains: the CPU (asked, or a CPU plan without GPUs given), else the GPUs
        (none given: caffe takes the solver's device, 0). The CPU computes fp32 whatever is asked."""
        if self.cpu or (not self.gpus and plan.solver_mode == "CPU"):
            if self.precision.precision != "fp32":
                log.info("precision %s applies to GPUs only: the CPU computes in fp32", self.precision.precision)
            return Device("CPU", (), precision_.effective(self.precision, "CPU"))
        if self.gpus:
            per_gpu_batch(plan.model.train_batch, len(self.gpus))  # refused before anything is written
        return Device("GPU", self.gpus, self.precision)

    def train_args(self) -> list[str]:
        """The `transfer train` options a child needs to train as this run decided (devices apart)."""
        args = ["--precision", self.precision.precision,
                "--deterministic" if self.precision.deterministic else "--no-deterministic"]
        if self.max_seconds:
            args += ["--max-seconds", str(self.max_seconds)]
        if self.retrain:
            args.append("--retrain")
        return args

    def with_(self, **changes: Any) -> RunOptions:
        return replace(self, **changes)


def parse_gpus(value: str) -> tuple[int, ...]:
    """`--gpu 0` or `--gpu 0,1`: distinct GPU numbers."""
    try:
        gpus = tuple(int(g) for g in value.split(","))
    except ValueError:
        gpus = ()
    if not gpus or min(gpus) < 0 or len(set(gpus)) != len(gpus):
        raise argparse.ArgumentTypeError(f"{value!r}: expected a GPU number or distinct numbers "
                                         "separated by commas, e.g. 0 or 0,1")
    return gpus


def add_retrain_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retrain", action="store_true",
                   help="start over where a run directory cannot be continued: it holds another definition of "
                        "the net (another plan, or the plan changed) or init weights surgery did not write; "
                        "its files are set aside in <run>/superseded/<time>/, nothing is deleted")


def add_precision_options(p: argparse.ArgumentParser) -> None:
    precision_.add_options(p)


def add_run_options(p: argparse.ArgumentParser, packing: str) -> None:
    """The options `transfer run` and `transfer submit` share: placement and precision."""
    add_placement_options(p, packing)
    precision_.add_options(p)


def from_args(plan: Plan, args: argparse.Namespace, **extra: Any) -> RunOptions:
    """The RunOptions a command line asks for: every RunOptions field the parser has, plus `extra`."""
    names = {f.name for f in fields(RunOptions)} | {"deterministic"}
    given = {k: v for k, v in vars(args).items() if k in names}
    if "net_gpus" in given:
        given["net_gpus"] = tuple(parse_net_gpus(given["net_gpus"]).items()) or None
    if "multi_gpu" in given:
        given["multi_gpu"] = given["multi_gpu"] == "auto"
    if given.get("figures"):
        given["figures"] = Path(given["figures"])
    given.update(extra)
    return RunOptions.of(plan, **given)
