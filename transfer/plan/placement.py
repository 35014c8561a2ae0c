"""Where the nets of a run go: how many share a GPU, and which train on several.

`transfer run` and `transfer submit` take the choice from the command line (`--nets-per-gpu K`,
`--net-gpus PATTERN=G`) or from the makespan simulator (`--nets-per-gpu auto`, `--multi-gpu auto`):
it plays the plan's remaining work out on the GPUs at hand with the GPU speed figures
(transfer/plan/speed.py) and keeps the K, and the multi-GPU nets, that finish soonest. So what the
simulator reports is what the run does.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core.errors import TransferError
from .model import Net, Plan
from ..core.files import duration
from .schedule import simulate, width_of
from .speed import DEFAULT_FIGURES, load_figures


@dataclass(frozen=True)
class Left:
    """A net as the simulator sees it: the iterations it has left (its newest snapshot counts)."""

    name: str
    base: str | None
    max_iter: int


@dataclass(frozen=True)
class Placement:
    nets_per_gpu: int
    net_gpus: dict[str, int] = field(default_factory=dict)   # name patterns (exact names when chosen) -> GPUs
    chosen: bool = False                                      # by the simulator
    makespan: float | None = None                             # seconds, simulated with the figures
    figures: Path | None = None

    def width(self) -> Callable[[Net], int]:
        return width_of(self.net_gpus)

    def describe(self) -> str:
        text = f"{self.nets_per_gpu} net(s) a GPU; on several GPUs: {few(self.net_gpus) or 'none'}"
        if self.chosen:
            text += (f" (chosen by simulation: {duration(self.makespan)} for the nets left, figures "
                     f"{self.figures.name if self.figures else '?'})")
        return text


def few(wide: dict[str, int], shown_at_most: int = 6) -> str:
    """'a (2), b (2), ... 3 more': a long list of nets and their GPUs, cut short."""
    items = [f"{n} ({g})" for n, g in wide.items()]
    return ", ".join(items[:shown_at_most]) + (f", ... {len(items) - shown_at_most} more"
                                               if len(items) > shown_at_most else "")


def nets_left(plan: Plan, nets: list[Net]) -> list[Left]:
    """The nets not yet done, each with the iterations past its newest snapshot; a base already
    done is left out (its dependents wait for nothing)."""
    out = []
    for net in nets:
        if net.run.is_done():
            continue
        snaps = net.run.snapshots()
        done_iter = snaps[0][0] if snaps else 0
        base = plan.base_of(net)
        out.append(Left(net.name, base.name if base is not None else None, max(1, net.max_iter - done_iter)))
    return out


def choose(plan: Plan, nets: list[Net], gpus: int, nets_per_gpu: int | str = 1, multi_gpu: bool = False,
           net_gpus: dict[str, int] | None = None, figures: str | Path | None = None) -> Placement:
    """The placement for `nets` on `gpus` GPUs: as given, or what the simulator finds shortest.
    Multi-GPU widths are only those that divide the plan's train batch (each GPU runs batch / G)."""
    given = dict(net_gpus or {})
    if nets_per_gpu != "auto" and not multi_gpu:
        if not isinstance(nets_per_gpu, int) or nets_per_gpu < 1:
            raise TransferError(f"--nets-per-gpu {nets_per_gpu!r}: expected a positive integer or 'auto'")
        return Placement(nets_per_gpu, given)
    fig = load_figures(figures)
    left = nets_left(plan, nets)
    if not left:
        return Placement(nets_per_gpu if isinstance(nets_per_gpu, int) else 1, given)
    res = simulate(plan.name, left, gpus, fig.alone_sec_per_iter, given, figures=fig, nets_per_gpu=nets_per_gpu,
                   multi_gpu=multi_gpu, batch=plan.model.train_batch)
    # (the given widths are among them: widening only adds GPUs)
    return Placement(res["nets_per_gpu"], res["multi_gpu_nets"], chosen=True, makespan=res["makespan"],
                     figures=fig.path)


def check_widths(plan: Plan, nets: list[Net], width: Callable[[Net], int], gpus: int | None = None,
                 gpus_option: str = "--gpus") -> None:
    """Refuse a net wider than the GPUs at hand, or whose train batch does not split over its GPUs."""
    if gpus is not None:
        too_wide = [n for n in nets if width(n) > gpus]
        if too_wide:
            raise TransferError(f"--net-gpus: net '{too_wide[0].name}' needs {width(too_wide[0])} GPUs; "
                                f"{gpus_option} gives {gpus}")
    uneven = [n for n in nets if plan.model.train_batch % width(n)]
    if uneven:  # each GPU of a net runs batch / G images (train.per_gpu_batch)
        raise TransferError(f"--net-gpus: net '{uneven[0].name}': a train batch of {plan.model.train_batch} "
                            f"cannot be split evenly over {width(uneven[0])} GPUs")


def nets_per_gpu_arg(value: str) -> int | str:
    """An argparse type: a positive integer, or 'auto'."""
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"--nets-per-gpu {value!r}: expected a positive integer or 'auto'")
    return int(value)


def add_placement_options(p: argparse.ArgumentParser, packing: str) -> None:
    """--nets-per-gpu, --net-gpus, --multi-gpu and --figures, the same for run, submit and simulate."""
    p.add_argument("--nets-per-gpu", type=nets_per_gpu_arg, default=1, metavar="K|auto",
                   help=f"{packing} (default 1); auto: the K the speed figures say finishes soonest")
    p.add_argument("--net-gpus", action="append", metavar="PATTERN=G",
                   help="train matching nets on G whole GPUs each (caffe -gpu 0,1,..; the batch is split so "
                        "the effective batch stays the plan's); repeatable")
    p.add_argument("--multi-gpu", choices=("auto", "off"), default="off",
                   help="auto: give the nets on the critical path several GPUs where the speed figures say "
                        "that shortens the plan")
    p.add_argument("--figures", metavar="FILE",
                   help=f"GPU speed figures: one net alone, K nets a GPU, one net on G GPUs (YAML; default "
                        f"transfer/{DEFAULT_FIGURES.parent.name}/{DEFAULT_FIGURES.name}; "
                        "`benchmarks/bench_gpu.py --figures-out` measures them)")
