"""The experiment plan: one object that names every net of an experiment.

A plan is declared in a YAML file (transfer/plans/<name>.yaml). `load_plan` reads it once into
frozen, typed specs (model, solver, directories, data sets), checking every key, type and range
with errors that name the file and the key, then expands its experiment families into `Net`s
through the FAMILIES table. Everything downstream (nets, training, SLURM, report) asks the plan;
nothing else derives net names, paths or dependencies.
"""
from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import yaml

from . import budgets
from .errors import TransferError
from .files import repo_path
from .rundir import RunDir
from .schedule import order
from .spec import Block, DirsSpec, ModelSpec, PrecisionSpec, SolverSpec, SyntheticSpec, TargetSpec, read_dirs, \
    read_model, read_precision, read_solver, read_synthetic, read_target, check_name

PLAN_DIR = Path(__file__).resolve().parent / "plans"
LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]

# Treatments, as in the paper: base nets; selffer BnB and transfer AnB (copied layers frozen);
# their fine-tuned versions BnB+ and AnB+; random weights (layers 1..n random and frozen);
# reduced (the base net on fewer images per class). Huh et al. 2016 add: readout (layers 1-7 copied
# and frozen, a new fc8 on the whole set), target_ft (all layers copied but fc8, all fine-tuned on a
# user's target dataset) and scratch (the target dataset from random weights).
TREATMENTS = ("base", "selffer", "transfer", "selffer_ft", "transfer_ft", "random_weights", "reduced",
              "readout", "target_ft", "scratch")
SOLVER_MODES = ("CPU", "GPU")
TOP_KEYS = ("name", "data_dir", "runs_dir", "split_dir", "nets_dir", "solvers_dir", "solver_mode",
            "precision", "deterministic", "synthetic", "model", "solver", "schedules", "datasets", "experiments", "targets",
            "top_k")
# A net's number is the mean of its top_k highest validation accuracies: the paper's 10 of its 450 tests.
# A plan with fewer tests keeps the paper's fraction (its `top_k`, docs/small-scale.md).
PAPER_TOP_K = 10


# ---------------------------------------------------------------------------- nets

@dataclass(frozen=True)
class DatasetFiles:
    """One data set's files under the plan's data directory: <data>/<name>/{train_lmdb,val_lmdb,mean}."""

    train: Path
    val: Path
    mean: Path
    labels: Path     # a view's label map ("old new" lines): the set is read through another set's LMDBs

    @staticmethod
    def under(data_dir: Path, name: str) -> DatasetFiles:
        d = data_dir / name
        return DatasetFiles(train=d / "train_lmdb", val=d / "val_lmdb", mean=d / "mean.binaryproto",
                            labels=d / "labels.txt")


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
    datasets: dict[str, int]            # data set -> classes
    nets: tuple[Net, ...]
    targets: tuple[TargetSpec, ...] = ()   # the user's target datasets (`targets`)
    precision: PrecisionSpec = PrecisionSpec()   # fp32 | tf32 on GPUs, deterministic cuDNN or not
    top_k: int = PAPER_TOP_K            # validation tests averaged into a net's number

    @cached_property
    def by_name(self) -> dict[str, Net]:
        return {net.name: net for net in self.nets}

    def net(self, name: str) -> Net:
        try:
            return self.by_name[name]
        except KeyError:
            raise TransferError(f"plan '{self.name}' has no net '{name}' "
                                f"(try `transfer plan show --plan {self.name}`)") from None

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

    def base_of(self, net: Net) -> Net | None:
        """The net whose weights `net` copies (None when it copies none)."""
        return self.net(net.base) if net.copied and net.base else None

    def ordered(self, nets: list[Net] | None = None) -> list[Net]:
        """Dependency order, longest remaining chain (critical path) first: the one order that
        `transfer run`, `transfer submit` and `plan simulate` all use (transfer/schedule.py)."""
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


def plan_path(name_or_path: str) -> Path:
    cand = Path(name_or_path)
    if cand.suffix in (".yaml", ".yml") and cand.is_file():
        return cand
    path = PLAN_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PLAN_DIR.glob("*.yaml")))
        raise TransferError(f"no plan '{name_or_path}' (known: {known}; or give a .yaml file)")
    return path


def load_plan(name_or_path: str) -> Plan:
    path = plan_path(name_or_path)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TransferError(f"{path}: not valid YAML: {exc}") from None
    return expand(config, path)


# ---------------------------------------------------------------------------- expansion

class Builder:
    """Collects the nets of a plan while the family expanders run (what an expander is given)."""

    def __init__(self, top: Block):
        self.path = top.path
        self.plan_name = top.name("name")
        self.dirs = read_dirs(top, self.plan_name)
        self.model = read_model(top.block("model"))
        solver = read_solver(top.block("solver"))
        self.schedules: dict[str, SolverSpec] = {"default": solver}
        schedules = top.block("schedules", required=False)
        for sname in schedules.keys(safe=True):
            self.schedules[sname] = read_solver(schedules.block(sname), base=solver)
        datasets = top.block("datasets")
        self.datasets = {ds: datasets.integer(ds, lo=1) for ds in datasets.keys(safe=True)}
        self.nets: list[Net] = []
        self.views: dict[str, str] = {}   # data set -> the set whose LMDBs it is read through (views)

    def dataset_classes(self, dataset: str, net_name: str) -> int:
        if dataset not in self.datasets:
            raise TransferError(f"{self.path}: net '{net_name}': dataset '{dataset}' is not declared "
                                f"under 'datasets'")
        return self.datasets[dataset]

    def fc8(self, classes: int, net_name: str) -> int:
        out = self.model.fc8_outputs
        if out == "classes":
            return classes
        if out < classes:
            raise TransferError(f"{self.path}: net '{net_name}': model.fc8_outputs={out!r} cannot hold "
                                f"the {classes} classes of its training set")
        return int(out)

    def add(self, *, name: str, treatment: str, family: str, target: str, split: str | None = None,
            source: str | None = None, n: int | None = None, base: str | None = None,
            frozen: int = 0, copied: int = 0, schedule: str = "default",
            val_dataset: str | None = None, mean_dataset: str | None = None,
            released_name: str | None = None) -> None:
        classes = self.dataset_classes(target, name)
        if schedule not in self.schedules:
            raise TransferError(f"{self.path}: net '{name}': schedule '{schedule}' is not declared "
                                f"under 'schedules'")
        val_ds, mean_ds = val_dataset or target, mean_dataset or target
        solver = self.schedules[schedule]
        d = self.dirs
        tv, vv = self.views.get(target), self.views.get(val_ds)
        files = NetFiles(train_net=d.nets / f"{name}.train.prototxt", test_net=d.nets / f"{name}.test.prototxt",
                         solver=d.solvers / f"{name}.solver.prototxt",
                         train_data=DatasetFiles.under(d.data, tv or target).train,
                         val_data=DatasetFiles.under(d.data, vv or val_ds).val,
                         mean=DatasetFiles.under(d.data, mean_ds).mean,
                         train_labels=DatasetFiles.under(d.data, target).labels if tv else None,
                         val_labels=DatasetFiles.under(d.data, val_ds).labels if vv else None)
        self.nets.append(Net(
            name=name, treatment=treatment, family=family, split=split, source=source, target=target,
            val_dataset=val_ds, mean_dataset=mean_ds, n=n, base=base, frozen=frozen, copied=copied,
            num_classes=classes, fc8_outputs=self.fc8(classes, name), schedule=schedule, solver=solver,
            released_name=released_name, files=files, run=RunDir(d.runs / name, name, solver.max_iter)))

    def add_base(self, dataset: str, family: str, split: str | None, released: str | None) -> None:
        self.add(name=base_name(dataset), treatment="base", family=family, target=dataset,
                 split=split, released_name=released)

    def add_copy(self, source: str, target: str, n: int, finetune: bool, family: str,
                 split: str | None, released: str | None) -> None:
        treatment = ("selffer" if source == target else "transfer") + ("_ft" if finetune else "")
        name = f"{source}-{n}-{target}" + ("-ft" if finetune else "")
        # A transfer net subtracts the mean of its base net's training set (released behaviour).
        self.add(name=name, treatment=treatment, family=family, target=target, split=split,
                 source=source, n=n, base=base_name(source), frozen=0 if finetune else n,
                 copied=n, mean_dataset=source, released_name=released)


def base_name(dataset: str) -> str:
    return f"base-{dataset}"


def _ns(blk: Block) -> list[int]:
    ns = blk.sequence("n")
    for n in ns:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 7:
            raise TransferError(f"{blk.path}: {blk.where}: field 'n' has {n!r}; n must be an integer in 1..7")
    return ns


def _splits(blk: Block) -> list[int]:
    splits = blk.sequence("splits")
    for s in splits:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise TransferError(f"{blk.path}: {blk.where}: split {s!r} must be a seed, a non-negative integer")
    return splits


def _groups(blk: Block) -> list[tuple[Block, bool]]:
    """The `frozen` and `finetuned` groups of a transfer family, with whether they fine-tune."""
    return [(blk.block(kind), ft) for kind, ft in (("frozen", False), ("finetuned", True))
            if blk.has(kind) and blk.raw(kind)]


# ---------------------------------------------------------------------------- families
# One function per experiment family: it reads its YAML block (experiments.<family>) and adds
# its nets. A new family is one function here, one entry in FAMILIES and one YAML block.

def _random_split(b: Builder, blk: Block) -> None:
    """Bases on both halves of each random split; AnB / BnB (frozen and fine-tuned) for each n."""
    blk.check_keys(("splits", "n", "frozen", "finetuned"))
    ns = _ns(blk)
    for s in _splits(blk):
        for half in "AB":
            b.add_base(f"half{s}{half}", "random_split", str(s), f"half{s}{half}")
    for grp, ft in _groups(blk):
        grp.check_keys(("splits", "directions"))
        for s in _splits(grp):
            for d in grp.sequence("directions"):
                if d not in ("AA", "AB", "BA", "BB"):
                    raise TransferError(f"{grp.path}: {grp.where}: direction {d!r} must be one of "
                                        f"AA, AB, BA, BB")
                for n in ns:
                    rel = f"transfer{'-ft' if ft else ''}{s}{d[0]}{s}{d[1]}_1_{n}"
                    b.add_copy(f"half{s}{d[0]}", f"half{s}{d[1]}", n, ft, "random_split", str(s), rel)


def _natman_letter(dataset: str) -> str:
    # The released code called the natural half "A" and the man-made half "B".
    return {"natural": "A", "manmade": "B"}[dataset]


def _natman(b: Builder, blk: Block) -> None:
    """Man-made and natural bases, and transfer between them for each n."""
    blk.check_keys(("n", "frozen", "finetuned"))
    ns = _ns(blk)
    for ds in ("manmade", "natural"):
        b.add_base(ds, "natman", "natman", f"halfnatman{_natman_letter(ds)}")
    for grp, ft in _groups(blk):
        grp.check_keys(("directions",))
        for pair in grp.sequence("directions"):
            if not (isinstance(pair, list) and len(pair) == 2 and set(pair) <= {"manmade", "natural"}):
                raise TransferError(f"{grp.path}: {grp.where}: direction {pair!r} must be a pair of "
                                    f"manmade and natural, e.g. [natural, manmade]")
            src, tgt = pair
            for n in ns:
                rel = f"transfer{'-ft' if ft else ''}natman{_natman_letter(src)}{_natman_letter(tgt)}_1_{n}"
                b.add_copy(src, tgt, n, ft, "natman", "natman", rel)


def _whole(b: Builder, blk: Block) -> None:
    """The base net on every class ("netbase"). `schedule`: a small plan's whole set, twice a half's
    images, reaches its plateau later than the halves (docs/small-scale.md); the paper's uses the default."""
    blk.check_keys(("dataset", "schedule"))
    ds = blk.name("dataset")
    b.add(name=base_name(ds), treatment="base", family="whole", target=ds, released_name="netbase",
          schedule=blk.name("schedule", default="default"))


def _random_weights(b: Builder, blk: Block) -> None:
    """Layers 1..n left at their random initial weights and frozen ("nolearn"); `schedule` as `whole`'s."""
    blk.check_keys(("dataset", "n", "schedule"))
    ds = blk.name("dataset")
    schedule = blk.name("schedule", default="default")
    for n in _ns(blk):
        b.add(name=f"random-{n}", treatment="random_weights", family="random_weights", target=ds,
              n=n, frozen=n, released_name=f"nolearn_1_{n}", schedule=schedule)


def _reduced(b: Builder, blk: Block) -> None:
    """The whole-set base net on the first `count` training images of each class."""
    blk.check_keys(("counts", "val_dataset", "schedule"))
    val = blk.name("val_dataset", default="all")
    schedule = blk.name("schedule", default="default")
    for count in blk.sequence("counts"):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise TransferError(f"{blk.path}: {blk.where}: count {count!r} must be a positive integer")
        name, ds = f"reduced-{count:04d}", f"reduced{count:04d}"
        b.datasets.setdefault(ds, b.dataset_classes(val, name))
        b.add(name=name, treatment="reduced", family="reduced", target=ds, schedule=schedule,
              val_dataset=val, released_name=name)


HUH_KEYS = ("original", "label_sets", "budgets", "schedule", "readout", "views")


def _huh2016(b: Builder, blk: Block) -> None:
    """Huh et al. 2016: a base net per label set and data budget (and the original set), each read out
    on the original set (layers 1-7 copied and frozen, a new fc8)."""
    blk.check_keys(HUH_KEYS)
    original = blk.name("original", default="all")
    schedule = blk.name("schedule", default="default")
    classes = b.dataset_classes(original, "huh2016.original")
    names = [original]
    for key in ("label_sets", "budgets"):
        for ds in blk.sequence(key) if blk.has(key) else []:
            names.append(check_name(blk, key, ds))
    if blk.raw("views", False) not in (True, False):
        raise blk.fail("views", f"expected true or false, got {blk.raw('views')!r}")
    if blk.raw("views", False):
        # label sets read through the original set's LMDBs by the Data layer: no relabelled copies
        b.views.update({ds: original for ds in (blk.sequence("label_sets") if blk.has("label_sets") else [])})
    for ds in names:
        val = ds
        if budgets.IMAGES_RE.fullmatch(ds) or (budgets.budget_total(ds) or (0, ""))[1] == "images":
            # every class, fewer images: validated on the original set, as the reduced sets are
            b.datasets.setdefault(ds, classes)
            val = original
        name = base_name(ds)
        if name not in {n.name for n in b.nets}:
            b.add(name=name, treatment="base", family="huh2016", target=ds, val_dataset=val, schedule=schedule)
    if blk.has("readout"):
        ro = blk.block("readout")
        ro.check_keys(("dataset", "schedule"))
        on = ro.name("dataset", default=original)
        for ds in names:
            if ds == on:
                continue
            b.add(name=f"readout-{ds}", treatment="readout", family="huh2016", target=on, n=7,
                  base=base_name(ds), source=ds, frozen=7, copied=7, mean_dataset=ds,
                  schedule=ro.name("schedule", default="default"))


def _targets(b: Builder, blk: Block) -> list[TargetSpec]:
    """Transfer to each user dataset (`targets`): from every chosen net, a new fc8 and every layer fine-tuned."""
    specs = []
    for tname in blk.keys(safe=True):
        spec = read_target(blk.block(tname), tname)
        if tname in b.datasets and b.datasets[tname] != spec.classes:
            raise TransferError(f"{b.path}: targets.{tname}: {spec.classes} classes, but datasets.{tname} "
                                f"says {b.datasets[tname]}")
        b.datasets[tname] = spec.classes
        sources = [n for n in b.nets if n.treatment in ("base", "reduced")] if not spec.bases else \
            [n for n in b.nets if any(fnmatch.fnmatchcase(n.name, p) for p in spec.bases)]
        if not sources:
            raise TransferError(f"{b.path}: targets.{tname}.from: {list(spec.bases) or 'every base net'} "
                                f"matches no net of the plan")
        for src in sources:
            b.add(name=f"ft-{tname}-{src.name}", treatment="target_ft", family="target", target=tname, n=7,
                  base=src.name, source=src.target, copied=7, frozen=0, mean_dataset=src.mean_dataset,
                  schedule=spec.schedule)
        if spec.scratch:
            b.add(name=f"scratch-{tname}", treatment="scratch", family="target", target=tname,
                  schedule=spec.scratch)
        specs.append(spec)
    return specs


FAMILIES: dict[str, Callable[[Builder, Block], None]] = {
    "huh2016": _huh2016,
    "random_split": _random_split,
    "natman": _natman,
    "whole": _whole,
    "random_weights": _random_weights,
    "reduced": _reduced,
}


def expand(config: Any, path: Path) -> Plan:
    """The plan a parsed YAML document declares (every key checked)."""
    top = Block(path, "", config)
    top.check_keys(TOP_KEYS)
    b = Builder(top)
    mode = top.choice("solver_mode", SOLVER_MODES, default="GPU")
    precision = read_precision(top)
    synthetic = read_synthetic(top.block("synthetic")) if top.has("synthetic") else None
    exps = top.block("experiments")
    for family in exps.keys(known=tuple(FAMILIES), what="family"):
        FAMILIES[family](b, exps.block(family))
    targets = _targets(b, top.block("targets")) if top.has("targets") else []
    if not b.nets:
        raise TransferError(f"{path}: experiments: the plan declares no nets (families: {', '.join(FAMILIES)})")
    _check_nets(b.nets, path)
    return Plan(name=b.plan_name, path=path, dirs=b.dirs, model=b.model, solver_mode=mode,
                synthetic=synthetic, datasets=dict(b.datasets), nets=tuple(b.nets),
                targets=tuple(targets), precision=precision,
                top_k=top.integer("top_k", lo=1, default=PAPER_TOP_K))


def _check_nets(nets: list[Net], path: Path) -> None:
    names = [n.name for n in nets]
    dupes = sorted({x for x in names if names.count(x) > 1})
    if dupes:
        raise TransferError(f"{path}: nets declared twice: {dupes}")
    for net in nets:
        if net.base is not None and net.base not in names:
            raise TransferError(f"{path}: net '{net.name}': field 'base' names '{net.base}', which is not "
                                f"in the plan (declare its base net too)")

