"""Reading a plan: find its YAML file, check every key, expand its families into nets and data sets.

`load_plan` is the one entry: everything after it holds a frozen `Plan` (transfer/plan/model.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import TransferError
from ..core.yamlfile import load_yaml
from .builder import Builder
from .families import FAMILIES, huh_compare, targets
from .model import PLANS, Net, Plan
from .spec import Block, read_precision, read_synthetic

PLAN_DIR = PLANS
SOLVER_MODES = ("CPU", "GPU")
TOP_KEYS = ("name", "data_dir", "runs_dir", "split_dir", "nets_dir", "solvers_dir", "solver_mode",
            "precision", "deterministic", "replicates", "top_k", "synthetic", "model", "solver", "schedules",
            "datasets", "experiments", "targets")


def plan_path(name_or_path: str) -> Path:
    """A plan's YAML file: a .yaml path as given (made absolute where it enters), or a plan of
    transfer/plans/ by name."""
    cand = Path(name_or_path)
    if cand.suffix in (".yaml", ".yml") and cand.is_file():
        return cand.resolve()
    path = PLAN_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PLAN_DIR.glob("*.yaml")))
        raise TransferError(f"no plan '{name_or_path}' (known: {known}; or give a .yaml file)")
    return path


def load_plan(name_or_path: str) -> Plan:
    path = plan_path(name_or_path)
    config = load_yaml(path)   # refuses a key given twice (two `solver:` blocks), naming both lines
    return expand(config, path)


def expand(config: Any, path: Path) -> Plan:
    """The plan a parsed YAML document declares (every key checked)."""
    top = Block(path, "", config)
    top.check_keys(TOP_KEYS)
    synthetic = read_synthetic(top.block("synthetic")) if top.has("synthetic") else None
    b = Builder(top, synthetic.classes if synthetic else None)
    mode = top.choice("solver_mode", SOLVER_MODES, default="GPU")
    precision = read_precision(top)
    exps = top.block("experiments")
    compare: dict[str, str] = {}
    for family in exps.keys(known=tuple(FAMILIES), what="family"):
        FAMILIES[family](b, exps.block(family))
        if family == "huh2016":
            compare = huh_compare(exps.block(family))
    specs = targets(b, top.block("targets")) if top.has("targets") else []
    if not b.nets:
        raise TransferError(f"{path}: experiments: the plan declares no nets (families: {', '.join(FAMILIES)})")
    b.replicate()
    _check_nets(b.nets, path)
    return Plan(name=b.plan_name, path=path, dirs=b.dirs, model=b.model, solver_mode=mode,
                synthetic=synthetic, datasets=dict(b.datasets), nets=tuple(b.nets), targets=tuple(specs),
                precision=precision, replicates=b.replicates, compare=compare,
                top_k=top.integer("top_k", lo=1) if top.has("top_k") else None)


def _check_nets(nets: list[Net], path: Path) -> None:
    names = [n.name for n in nets]
    dupes = sorted({x for x in names if names.count(x) > 1})
    if dupes:
        raise TransferError(f"{path}: nets declared twice: {dupes}")
    for net in nets:
        if net.base is not None and net.base not in names:
            raise TransferError(f"{path}: net '{net.name}': field 'base' names '{net.base}', which is not "
                                f"in the plan (declare its base net too)")
