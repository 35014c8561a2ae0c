"""The experiment plan: one object that names every net and data set of an experiment.

A plan is declared in a YAML file (transfer/plans/<name>.yaml) and read once by transfer/plan/load.py
into the frozen, typed objects here; its experiment families (transfer/plan/families.py) make the
`Net`s and `DatasetSpec`s. Everything downstream (data, nets, training, SLURM, report) asks the plan;
nothing else derives net names, paths, data set kinds or dependencies.
"""
from __future__ import annotations

import fnmatch
import shlex
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from ..caffe.precision import PrecisionSpec
from ..core.errors import TransferError
from ..core.files import repo_path
from .datasets import WHOLE, DatasetFiles, DatasetSpec
from .rundir import RunDir
from .schedule import order
from .spec import DirsSpec, ModelSpec, SolverSpec, SyntheticSpec, TargetSpec

PLANS = Path(__file__).resolve().parent.parent / "plans"   # the plans that come with transfer, by name
LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]

# Treatments, as in the paper: base nets; selffer BnB and transfer AnB (copied layers frozen);
# their fine-tuned versions BnB+ and AnB+; random weights (layers 1..n random and frozen);
# reduced (the base net on fewer images per class). Huh et al. 2016 add: readout (layers 1-7 copied
# and frozen, a new fc8 on the whole set), target_ft (all layers copied but fc8, all fine-tuned on a
# user's target dataset) and scratch (the target dataset from random weights).
TREATMENTS = ("base", "selffer", "transfer", "selffer_ft", "transfer_ft", "random_weights", "reduced",
              "readout", "target_ft", "scratch")


# ---------------------------------------------------------------------------- nets

@dataclass(frozen=True)
class NetFiles:
    """A net's generated files and the data it reads, as the plan gives them (relative to the
    repository, or absolute): these strings go into the generated prototxt as they are."""

    train_net: Path
    test_net: Path
    solver: Path
    train_data: Path
    val_data: Path
    mean: Path
    # A view (the `views` option): the LMDBs above are the whole set's, read through this label map
    # by the Data layer (label_map_file) instead of a relabelled copy.
    train_labels: Path | None = None
    val_labels: Path | None = None

    def generated(self) -> tuple[Path, Path, Path]:
        """The three generated files (train net, test net, solver) as absolute paths."""
        return repo_path(self.train_net), repo_path(self.test_net), repo_path(self.solver)


@dataclass(frozen=True)
class Net:
    """One trained network of a plan: its identity; `files` and `run` say where its files are."""

    name: str
    treatment: str              # one of TREATMENTS
    family: str                 # a key of FAMILIES
    split: str | None           # "0".."3" for random halves, "natman", else None
    source: str | None          # data set the copied (or frozen random) layers come from
    target: str                 # data set this net trains on
    val_dataset: str            # data set it is validated on
    mean_dataset: str           # data set whose mean it subtracts (a transfer net: its base's)
    n: int | None               # layers 1..n copied / frozen
    base: str | None            # name of the net whose weights are copied
    frozen: int                 # layers 1..frozen have lr 0
    copied: int                 # layers 1..copied are copied from `base`
    num_classes: int            # classes in the target data set
    fc8_outputs: int
    schedule: str
    solver: SolverSpec
    released_name: str | None
    files: NetFiles
    run: RunDir
    replicate: int = 0          # which of the plan's `replicates` seeded runs of this net (0 = the first)
    group: str = ""             # the name every replicate of this net shares (the first replicate's name)

    @property
    def max_iter(self) -> int:
        return self.solver.max_iter

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("files", "run", "solver")}
        out.update(solver=str(self.files.solver), solver_params=asdict(self.solver), max_iter=self.max_iter,
                   train_net=str(self.files.train_net), test_net=str(self.files.test_net),
                   train_data=str(self.files.train_data), val_data=str(self.files.val_data),
                   mean_file=str(self.files.mean), run_dir=str(self.run.where))
        return out


# ---------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class Plan:
    name: str
    path: Path
    dirs: DirsSpec
    model: ModelSpec
    solver_mode: str                    # CPU | GPU: what the generated solver files say
    synthetic: SyntheticSpec | None     # the built-in image set, for plans that train on it
    datasets: dict[str, DatasetSpec]    # every data set a net trains or is validated on, the whole set's too
    nets: tuple[Net, ...]
    targets: tuple[TargetSpec, ...] = ()   # the user's target datasets (`targets`)
    precision: PrecisionSpec = PrecisionSpec()   # fp32 | tf32 on GPUs, deterministic cuDNN or not
    replicates: int = 1                 # seeded runs of every net (random splits: more splits)
    compare: dict[str, str] = field(default_factory=dict)   # published row -> the plan's data set it compares with
    top_k: int | None = None            # tests averaged into a net's number (None: scaled to its tests, the report's)

    @cached_property
    def by_name(self) -> dict[str, Net]:
        return {net.name: net for net in self.nets}

    @property
    def arg(self) -> str:
        """The `--plan` value that names this plan in a command from any directory: its name for a
        plan of transfer/plans/, else its file (by absolute path, quoted for a shell)."""
        if self.path.resolve() == (PLANS / f"{self.name}.yaml").resolve():
            return self.name
        return shlex.quote(str(self.path.resolve()))

    def net(self, name: str) -> Net:
        try:
            return self.by_name[name]
        except KeyError:
            raise TransferError(f"plan '{self.name}' ({self.path}) has no net '{name}' "
                                f"(try `transfer plan show --plan {self.arg}`)") from None

    def select(self, pattern: str | None) -> list[Net]:
        """Nets whose name matches a shell-style pattern (comma-separated patterns allowed)."""
        if not pattern:
            return list(self.nets)
        pats = [p.strip() for p in pattern.split(",") if p.strip()]
        chosen = [n for n in self.nets if any(fnmatch.fnmatchcase(n.name, p) for p in pats)]
        if not chosen:
            raise TransferError(f"--only {pattern!r} matches no net of plan '{self.name}'")
        return chosen

    def dependents(self, name: str) -> list[Net]:
        return [n for n in self.nets if n.base == name]

    def dataset(self, name: str) -> DatasetFiles:
        """A data set's databases and mean, as absolute paths."""
        return DatasetFiles.under(repo_path(self.dirs.data), name)

    @property
    def whole(self) -> DatasetSpec:
        return self.datasets[WHOLE]

    def used_datasets(self) -> list[DatasetSpec]:
        """The data sets some net trains or is validated on, and the whole set (every other derives from it)."""
        names = {n.target for n in self.nets} | {n.val_dataset for n in self.nets} | {WHOLE}
        return [self.datasets[d] for d in sorted(names)]

    def base_of(self, net: Net) -> Net | None:
        """The net whose weights `net` copies (None when it copies none)."""
        return self.net(net.base) if net.copied and net.base else None

    def ordered(self, nets: list[Net] | None = None) -> list[Net]:
        """Dependency order, longest remaining chain (critical path) first: the one order that
        `transfer run`, `transfer submit` and `plan simulate` all use (transfer/plan/schedule.py)."""
        return order(list(self.nets) if nets is None else nets)

    def with_bases(self, nets: list[Net]) -> list[Net]:
        """The selection plus every unfinished ancestor its nets copy from, in training order."""
        chosen = {n.name: n for n in nets}
        todo = list(nets)
        while todo:
            base = self.base_of(todo.pop())
            if base is not None and base.name not in chosen and not base.run.is_done():
                chosen[base.name] = base
                todo.append(base)
        return self.ordered(list(chosen.values()))


