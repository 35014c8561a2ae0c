"""The experiment plan: one object that names every net of an experiment.

A plan is declared in a YAML file (transfer/plans/<name>.yaml) by experiment families;
`load_plan` expands them into `Net`s. Everything downstream (nets, training, SLURM, report)
asks the plan; nothing else derives net names, paths or dependencies.
"""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from . import REPO
from .errors import TransferError

PLAN_DIR = Path(__file__).resolve().parent / "plans"
LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]

# Treatments, as in the paper: base nets; selffer BnB and transfer AnB (copied layers frozen);
# their fine-tuned versions BnB+ and AnB+; random weights (layers 1..n random and frozen);
# reduced (the base net on fewer images per class).
TREATMENTS = ("base", "selffer", "transfer", "selffer_ft", "transfer_ft", "random_weights", "reduced")

SOLVER_KEYS = ("base_lr", "lr_policy", "gamma", "stepsize", "max_iter", "momentum", "weight_decay",
               "display", "test_interval", "test_iter", "snapshot")
MODEL_KEYS = ("image_size", "crop", "widths", "fc8_outputs", "train_batch", "test_batch")
OPTIONAL_MODEL_KEYS = ("weight_std_scale",)


@dataclass(frozen=True)
class Net:
    """One trained network of a plan. Paths are relative to the repository root (or absolute,
    when the plan's YAML gives absolute directories)."""

    name: str
    treatment: str
    family: str                 # random_split | natman | whole | random_weights | reduced
    split: str | None           # "0".."3" for random halves, "natman", else None
    source: str | None          # dataset the copied (or frozen random) layers come from
    target: str                 # dataset this net trains on
    n: int | None               # layers 1..n copied / frozen
    base: str | None            # name of the net whose weights are copied
    frozen: int                 # layers 1..frozen have lr 0
    copied: int                 # layers 1..copied are copied from `base`
    num_classes: int            # classes in the target dataset
    fc8_outputs: int
    schedule: str
    solver: dict[str, Any]
    train_data: str
    val_data: str
    mean_file: str
    train_net: str
    test_net: str
    solver_file: str
    run_dir: str
    released_name: str | None

    @property
    def max_iter(self) -> int:
        return int(self.solver["max_iter"])

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["solver"] = self.solver_file  # the field name for the solver path
        out["solver_params"] = self.solver
        out["max_iter"] = self.max_iter
        del out["solver_file"]
        return out


@dataclass
class Plan:
    name: str
    path: Path
    config: dict[str, Any]
    nets: list[Net] = field(default_factory=list)

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
        import fnmatch
        pats = [p.strip() for p in pattern.split(",") if p.strip()]
        chosen = [n for n in self.nets if any(fnmatch.fnmatchcase(n.name, p) for p in pats)]
        if not chosen:
            raise TransferError(f"--only {pattern!r} matches no net of plan '{self.name}'")
        return chosen

    def dependents(self, name: str) -> list[Net]:
        return [n for n in self.nets if n.base == name]

    def ordered(self, nets: list[Net] | None = None) -> list[Net]:
        """Dependency order, longest remaining chain (critical path) first: the one order that
        `transfer run`, `transfer submit` and `plan simulate` all use (transfer/schedule.py)."""
        from .schedule import order  # noqa: PLC0415 (schedule imports this module)
        return order(self, nets)

    @staticmethod
    def abspath(rel: str | Path) -> Path:
        """A plan path (relative to the repository, or absolute) as an absolute path."""
        return REPO / rel

    @property
    def data_dir(self) -> str:
        return self.config["data_dir"]

    @property
    def split_dir(self) -> str:
        return self.config["split_dir"]

    def datasets(self) -> dict[str, int]:
        return dict(self.config["datasets"])


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

def _need(cfg: dict, key: str, where: str, path: Path) -> Any:
    if not isinstance(cfg, dict) or key not in cfg:
        raise TransferError(f"{path}: {where}: missing field '{key}'")
    return cfg[key]


def _check_n(ns: list, where: str, path: Path) -> list[int]:
    for n in ns:
        if not isinstance(n, int) or not 1 <= n <= 7:
            raise TransferError(f"{path}: {where}: field 'n' has {n!r}; n must be an integer in 1..7")
    return list(ns)


class _Builder:
    def __init__(self, config: dict, path: Path):
        self.config = config
        self.path = path
        self.plan_name = _need(config, "name", "plan", path)
        self.model = _need(config, "model", "plan", path)
        for key in MODEL_KEYS:
            _need(self.model, key, "model", path)
        unknown = set(self.model) - set(MODEL_KEYS) - set(OPTIONAL_MODEL_KEYS)
        if unknown:
            raise TransferError(f"{path}: model: unknown field(s) {sorted(unknown)} "
                                f"(known: {', '.join(MODEL_KEYS + OPTIONAL_MODEL_KEYS)})")
        solver = _need(config, "solver", "plan", path)
        for key in SOLVER_KEYS:
            _need(solver, key, "solver", path)
        self.schedules = {"default": dict(solver)}
        for sname, over in (config.get("schedules") or {}).items():
            bad = set(over) - set(SOLVER_KEYS)
            if bad:
                raise TransferError(f"{path}: schedules.{sname}: unknown solver field(s) {sorted(bad)}")
            self.schedules[sname] = {**solver, **over}
        self.datasets: dict[str, int] = dict(_need(config, "datasets", "plan", path))
        self.data_dir = _need(config, "data_dir", "plan", path)
        self.runs_dir = _need(config, "runs_dir", "plan", path)
        # Generated files go under prototxt/<plan>/ and solvers/<plan>/ unless the plan says
        # otherwise (tests point these, like data_dir and runs_dir, at temporary directories).
        self.nets_dir = config.get("nets_dir", f"prototxt/{self.plan_name}")
        self.solvers_dir = config.get("solvers_dir", f"solvers/{self.plan_name}")
        self.nets: list[Net] = []

    def dataset_classes(self, dataset: str, net_name: str) -> int:
        if dataset not in self.datasets:
            raise TransferError(f"{self.path}: net '{net_name}': dataset '{dataset}' is not declared "
                                f"under 'datasets'")
        return int(self.datasets[dataset])

    def fc8(self, classes: int, net_name: str) -> int:
        out = self.model["fc8_outputs"]
        if out == "classes":
            return classes
        if not isinstance(out, int) or out < classes:
            raise TransferError(f"{self.path}: net '{net_name}': model.fc8_outputs={out!r} cannot hold "
                                f"the {classes} classes of its training set")
        return out

    def add(self, *, name: str, treatment: str, family: str, target: str, split: str | None = None,
            source: str | None = None, n: int | None = None, base: str | None = None,
            frozen: int = 0, copied: int = 0, schedule: str = "default",
            val_dataset: str | None = None, mean_dataset: str | None = None,
            released_name: str | None = None) -> None:
        classes = self.dataset_classes(target, name)
        if schedule not in self.schedules:
            raise TransferError(f"{self.path}: net '{name}': schedule '{schedule}' is not declared")
        dd = self.data_dir
        # A transfer net subtracts the mean of its base net's training set (released behaviour).
        mean_ds = mean_dataset or target
        self.nets.append(Net(
            name=name, treatment=treatment, family=family, split=split, source=source, target=target,
            n=n, base=base, frozen=frozen, copied=copied, num_classes=classes,
            fc8_outputs=self.fc8(classes, name), schedule=schedule,
            solver=dict(self.schedules[schedule]),
            train_data=f"{dd}/{target}/train_lmdb",
            val_data=f"{dd}/{val_dataset or target}/val_lmdb",
            mean_file=f"{dd}/{mean_ds}/mean.binaryproto",
            train_net=f"{self.nets_dir}/{name}.train.prototxt",
            test_net=f"{self.nets_dir}/{name}.test.prototxt",
            solver_file=f"{self.solvers_dir}/{name}.solver.prototxt",
            run_dir=f"{self.runs_dir}/{name}",
            released_name=released_name))

    def base_name(self, dataset: str) -> str:
        return f"base-{dataset}"

    def add_base(self, dataset: str, family: str, split: str | None, released: str | None) -> None:
        self.add(name=self.base_name(dataset), treatment="base", family=family, target=dataset,
                 split=split, released_name=released)

    def add_copy(self, source: str, target: str, n: int, finetune: bool, family: str,
                 split: str | None, released: str | None) -> None:
        selffer = source == target
        treatment = ("selffer" if selffer else "transfer") + ("_ft" if finetune else "")
        name = f"{source}-{n}-{target}" + ("-ft" if finetune else "")
        self.add(name=name, treatment=treatment, family=family, target=target, split=split,
                 source=source, n=n, base=self.base_name(source), frozen=0 if finetune else n,
                 copied=n, mean_dataset=source, released_name=released)


def _natman_letter(dataset: str) -> str:
    # The released code called the natural half "A" and the man-made half "B".
    return {"natural": "A", "manmade": "B"}[dataset]


def expand(config: dict, path: Path) -> Plan:
    b = _Builder(config, path)
    exps = config.get("experiments") or {}
    known = {"random_split", "natman", "whole", "random_weights", "reduced"}
    unknown = set(exps) - known
    if unknown:
        raise TransferError(f"{path}: experiments: unknown family {sorted(unknown)} (known: {sorted(known)})")

    if "random_split" in exps:
        rs = exps["random_split"]
        ns = _check_n(_need(rs, "n", "experiments.random_split", path), "experiments.random_split", path)
        for s in _need(rs, "splits", "experiments.random_split", path):
            for half in "AB":
                b.add_base(f"half{s}{half}", "random_split", str(s), f"half{s}{half}")
        for kind, ft in (("frozen", False), ("finetuned", True)):
            grp = rs.get(kind)
            if not grp:
                continue
            where = f"experiments.random_split.{kind}"
            for s in _need(grp, "splits", where, path):
                for d in _need(grp, "directions", where, path):
                    if not (isinstance(d, str) and re.fullmatch(r"[AB][AB]", d)):
                        raise TransferError(f"{path}: {where}: direction {d!r} must be one of AA, AB, BA, BB")
                    src, tgt = f"half{s}{d[0]}", f"half{s}{d[1]}"
                    for n in ns:
                        rel = f"transfer{'-ft' if ft else ''}{s}{d[0]}{s}{d[1]}_1_{n}"
                        b.add_copy(src, tgt, n, ft, "random_split", str(s), rel)

    if "natman" in exps:
        nm = exps["natman"]
        ns = _check_n(_need(nm, "n", "experiments.natman", path), "experiments.natman", path)
        for ds in ("manmade", "natural"):
            b.add_base(ds, "natman", "natman", f"halfnatman{_natman_letter(ds)}")
        for kind, ft in (("frozen", False), ("finetuned", True)):
            grp = nm.get(kind)
            if not grp:
                continue
            for src, tgt in _need(grp, "directions", f"experiments.natman.{kind}", path):
                for n in ns:
                    rel = (f"transfer{'-ft' if ft else ''}natman"
                           f"{_natman_letter(src)}{_natman_letter(tgt)}_1_{n}")
                    b.add_copy(src, tgt, n, ft, "natman", "natman", rel)

    if "whole" in exps:
        ds = _need(exps["whole"], "dataset", "experiments.whole", path)
        b.add_base(ds, "whole", None, "netbase")

    if "random_weights" in exps:
        rw = exps["random_weights"]
        ds = _need(rw, "dataset", "experiments.random_weights", path)
        for n in _check_n(_need(rw, "n", "experiments.random_weights", path), "experiments.random_weights", path):
            b.add(name=f"random-{n}", treatment="random_weights", family="random_weights", target=ds,
                  n=n, frozen=n, released_name=f"nolearn_1_{n}")

    if "reduced" in exps:
        rd = exps["reduced"]
        for count in _need(rd, "counts", "experiments.reduced", path):
            if not isinstance(count, int) or count < 1:
                raise TransferError(f"{path}: experiments.reduced: count {count!r} must be a positive integer")
            ds = f"reduced{count:04d}"
            b.datasets.setdefault(ds, b.dataset_classes(rd.get("val_dataset", "all"), f"reduced-{count:04d}"))
            b.add(name=f"reduced-{count:04d}", treatment="reduced", family="reduced", target=ds,
                  schedule=rd.get("schedule", "default"), val_dataset=rd.get("val_dataset", "all"),
                  released_name=f"reduced-{count:04d}")

    names = [n.name for n in b.nets]
    dupes = sorted({x for x in names if names.count(x) > 1})
    if dupes:
        raise TransferError(f"{path}: nets declared twice: {dupes}")
    for net in b.nets:
        if net.base is not None and net.base not in names:
            raise TransferError(f"{path}: net '{net.name}': field 'base' names '{net.base}', which is not "
                                f"in the plan (declare its base net too)")
    config = {**config, "datasets": b.datasets}
    return Plan(name=b.plan_name, path=path, config=config, nets=b.nets)


# ---------------------------------------------------------------------------- CLI

def _show(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    nets = plan.select(args.only)
    if args.json:
        print(json.dumps([n.to_json() for n in nets], indent=1))
        return 0
    print(f"plan {plan.name}: {len(nets)} nets ({plan.path.relative_to(REPO) if plan.path.is_relative_to(REPO) else plan.path})")
    print(f"{'name':28} {'treatment':15} {'n':>2} {'base':18} {'max_iter':>8}  released")
    for n in nets:
        print(f"{n.name:28} {n.treatment:15} {n.n or '':>2} {n.base or '-':18} {n.max_iter:>8}  "
              f"{n.released_name or '-'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="show or simulate an experiment plan")
    psub = p.add_subparsers(dest="plan_command", metavar="ACTION")
    psub.required = True
    show = psub.add_parser("show", help="list the nets of a plan")
    show.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file")
    show.add_argument("--only", help="comma-separated name patterns, e.g. 'half0*,base-*'")
    show.add_argument("--json", action="store_true", help="print a JSON list of nets")
    show.set_defaults(func=_show)
    from .schedule import register_simulate  # noqa: PLC0415 (schedule imports plan)
    register_simulate(psub)
