"""Typed, frozen specs read from a plan's YAML, and the checked reader that makes them.

Every value is checked where it is read: unknown keys (with the closest known one suggested),
types, ranges, and names that must be safe as file names and shell words. Errors name the file,
the key and the value.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..caffe.precision import PRECISIONS, PrecisionSpec
from ..core.errors import TransferError

# Names become file and directory names and shell words: no "..", no leading "-" or ".".
SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MISSING = object()
# Caffe's learning-rate policies (SGDSolver::GetLearningRate).
LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


@dataclass(frozen=True)
class ModelSpec:
    """CaffeNet's numbers at a plan's scale."""

    image_size: int
    crop: int
    widths: tuple[int, ...]         # conv1..conv5, fc6, fc7
    fc8_outputs: int | str          # a number, or "classes": one output per training class
    train_batch: int
    test_batch: int
    weight_std_scale: float = 1.0   # narrow nets learn only with wider filler stds


@dataclass(frozen=True)
class SolverSpec:
    """The solver numbers of one schedule (Caffe's SolverParameter fields of the same names)."""

    base_lr: float
    lr_policy: str
    gamma: float
    stepsize: int
    max_iter: int
    momentum: float
    weight_decay: float
    display: int
    test_interval: int
    test_iter: int
    snapshot: int


SOLVER_KEYS = tuple(f.name for f in fields(SolverSpec))


@dataclass(frozen=True)
class SyntheticSpec:
    """The built-in synthetic image set (`transfer synthetic make`)."""

    classes: int
    train_per_class: int
    val_per_class: int
    size: int
    seed: int


@dataclass(frozen=True)
class DirsSpec:
    """Where a plan's files go: relative to the repository, or absolute."""

    data: Path       # <data>/<data set>/{train_lmdb,val_lmdb,mean.binaryproto}
    runs: Path       # <runs>/<net>/: see transfer/plan/rundir.py
    split: Path      # class lists of the splits (and the synthetic images)
    nets: Path       # generated train/test prototxt
    solvers: Path    # generated solver prototxt


class Block:
    """One mapping of a plan's YAML file; `where` is its dotted key ("" at the top)."""

    def __init__(self, path: Path, where: str, value: Any):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise TransferError(f"{path}: {where or 'the file'}: expected a mapping of keys, got {value!r}")
        self.path, self.where, self.value = path, where, value

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str) -> TransferError:
        return TransferError(f"{self.path}: {self._key(key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.value

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key in self.value:
            return self.value[key]
        if default is _MISSING:
            raise TransferError(f"{self.path}: {self.where or 'plan'}: missing field '{key}'")
        return default

    def check_keys(self, known: tuple[str, ...], what: str = "field") -> None:
        for key in self.value:
            if key not in known:
                raise self.fail(str(key), f"unknown {what} {str(key)!r}{suggest(str(key), known)} "
                                          f"(known: {', '.join(known)})")

    def keys(self, known: tuple[str, ...] | None = None, what: str = "field", safe: bool = False) -> list[str]:
        if known is not None:
            self.check_keys(known, what)
        if safe:
            for key in self.value:
                check_name(self, str(key), str(key))
        return [str(k) for k in self.value]

    def block(self, key: str, required: bool = True) -> Block:
        return Block(self.path, self._key(key), self.raw(key, _MISSING if required else None))

    def integer(self, key: str, lo: int | None = None, hi: int | None = None, default: Any = _MISSING) -> int:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"expected an integer, got {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"at least {lo}" if hi is None else f"in {lo}..{hi}"
            raise self.fail(key, f"{v} is out of range (must be {rng})")
        return v

    def number(self, key: str, lo: float | None = None, below: float | None = None,
               positive: bool = False, default: Any = _MISSING) -> float:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(key, f"expected a number, got {v!r}")
        if (positive and v <= 0) or (lo is not None and v < lo) or (below is not None and v >= below):
            need = "positive" if positive else f">= {lo}" + (f" and < {below}" if below is not None else "")
            raise self.fail(key, f"{v} is out of range (must be {need})")
        return float(v)

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> str:
        v = self.raw(key, default)
        if v not in choices:
            raise self.fail(key, f"{v!r} is not one of {', '.join(choices)}{suggest(str(v), choices)}")
        return v

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self.fail(key, f"expected true or false, got {v!r}")
        return v

    def name(self, key: str, default: Any = _MISSING) -> str:
        """A string that is used in file names and shell words: [A-Za-z0-9._-] only."""
        return check_name(self, key, self.raw(key, default))

    def path_(self, key: str, default: Any = _MISSING) -> Path:
        v = self.raw(key, default)
        if not isinstance(v, str) or not v.strip():
            raise self.fail(key, f"expected a directory path, got {v!r}")
        if any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise self.fail(key, f"{v!r} holds a control character (a newline?): not a usable directory path")
        return Path(v).expanduser()   # relative to the repository (README, "The plan"), or absolute

    def sequence(self, key: str) -> list:
        v = self.raw(key)
        if not isinstance(v, list) or not v:
            raise self.fail(key, f"expected a non-empty list, got {v!r}")
        return v


def suggest(word: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_name(blk: Block, key: str, value: Any) -> str:
    if not isinstance(value, str) or not SAFE.fullmatch(value):
        raise blk.fail(key, f"{value!r} is not a usable name (letters, digits, '.', '_' and '-' only, "
                            f"starting with a letter or digit: it becomes part of file names and shell commands)")
    return value


def read_dirs(top: Block, plan_name: str) -> DirsSpec:
    # Generated files go under prototxt/<plan>/ and solvers/<plan>/ unless the plan says
    # otherwise (tests point these, like data_dir and runs_dir, at temporary directories).
    return DirsSpec(data=top.path_("data_dir"), runs=top.path_("runs_dir"), split=top.path_("split_dir"),
                    nets=top.path_("nets_dir", f"prototxt/{plan_name}"),
                    solvers=top.path_("solvers_dir", f"solvers/{plan_name}"))


def read_model(blk: Block) -> ModelSpec:
    blk.check_keys(tuple(f.name for f in fields(ModelSpec)))
    widths = blk.sequence("widths")
    if len(widths) != 7 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise blk.fail("widths", f"expected 7 positive integers (conv1..conv5, fc6, fc7), got {widths!r}")
    fc8 = blk.raw("fc8_outputs")
    if fc8 != "classes":
        fc8 = blk.integer("fc8_outputs", lo=1)
    size = blk.integer("image_size", lo=1)
    return ModelSpec(image_size=size, crop=blk.integer("crop", lo=1, hi=size), widths=tuple(widths),
                     fc8_outputs=fc8, train_batch=blk.integer("train_batch", lo=1),
                     test_batch=blk.integer("test_batch", lo=1),
                     weight_std_scale=blk.number("weight_std_scale", positive=True, default=1.0))


def read_solver(blk: Block, base: SolverSpec | None = None) -> SolverSpec:
    """The solver block, or (with `base`) a schedule that overrides some of its numbers."""
    blk.check_keys(SOLVER_KEYS, "solver field")
    readers = {
        "base_lr": lambda k: blk.number(k, positive=True),
        "lr_policy": lambda k: blk.choice(k, LR_POLICIES),
        "gamma": lambda k: blk.number(k, positive=True),
        "stepsize": lambda k: blk.integer(k, lo=1),
        "max_iter": lambda k: blk.integer(k, lo=1),
        "momentum": lambda k: blk.number(k, lo=0, below=1),
        "weight_decay": lambda k: blk.number(k, lo=0),
        "display": lambda k: blk.integer(k, lo=0),
        "test_interval": lambda k: blk.integer(k, lo=1),
        "test_iter": lambda k: blk.integer(k, lo=1),
        "snapshot": lambda k: blk.integer(k, lo=1),
    }
    if base is not None:
        return replace(base, **{k: readers[k](k) for k in blk.keys()})
    return SolverSpec(**{k: readers[k](k) for k in SOLVER_KEYS})


def read_precision(top: Block) -> PrecisionSpec:
    """The plan's `precision` (fp32 | tf32, default fp32) and `deterministic` (default false)."""
    return PrecisionSpec(precision=top.choice("precision", PRECISIONS, default="fp32"),
                         deterministic=top.boolean("deterministic", default=False))


def read_synthetic(blk: Block) -> SyntheticSpec:
    blk.check_keys(tuple(f.name for f in fields(SyntheticSpec)))
    return SyntheticSpec(classes=blk.integer("classes", lo=2), train_per_class=blk.integer("train_per_class", lo=1),
                         val_per_class=blk.integer("val_per_class", lo=1), size=blk.integer("size", lo=8),
                         seed=blk.integer("seed", lo=0))


@dataclass(frozen=True)
class TargetSpec:
    """A target dataset the user supplies (`targets.<name>`): its images, and which nets transfer to it.

    Images come as folders of class folders (`train`, `val`: a class is a sub-folder, labels follow the
    sorted folder names), as Caffe lists (`train_list`/`train_root`, `val_list`/`val_root`), or as a
    synthetic set (`synthetic`, the same parameters as the plan's)."""

    name: str
    classes: int
    train: Path | None = None
    val: Path | None = None
    train_list: Path | None = None
    train_root: Path | None = None
    val_list: Path | None = None
    val_root: Path | None = None
    synthetic: SyntheticSpec | None = None
    schedule: str = "default"       # the fine-tuning schedule of every transfer net
    scratch: str | None = None      # schedule of a net trained on the target from random weights (None: none)
    bases: tuple[str, ...] = ()     # net-name patterns of the nets transferred from (empty: every base net)


TARGET_KEYS = ("classes", "train", "val", "train_list", "train_root", "val_list", "val_root", "synthetic",
               "schedule", "scratch", "from")


def read_target(blk: Block, name: str) -> TargetSpec:
    blk.check_keys(TARGET_KEYS)
    folders = [k for k in ("train", "val") if blk.has(k)]
    lists = [k for k in ("train_list", "train_root", "val_list", "val_root") if blk.has(k)]
    forms = [f for f, present in (("folders (train, val)", folders), ("lists (train_list, train_root, val_list, "
                                  "val_root)", lists), ("synthetic", blk.has("synthetic"))) if present]
    if len(forms) != 1:
        raise blk.fail("classes", f"give the images one way: class folders (train, val), Caffe lists "
                                  f"(train_list, train_root, val_list, val_root) or synthetic; got "
                                  f"{' and '.join(forms) or 'none'}")
    need = ("train", "val") if folders else ("train_list", "train_root", "val_list", "val_root") if lists else ()
    for key in need:
        blk.raw(key)   # missing: an error naming the key
    paths = {k: blk.path_(k) for k in need}
    bases = blk.sequence("from") if blk.has("from") else []
    if any(not isinstance(p, str) or not p for p in bases):
        raise blk.fail("from", f"expected net-name patterns (strings), got {bases!r}")
    scratch = blk.name("scratch") if blk.has("scratch") and blk.raw("scratch") is not None else None
    return TargetSpec(name=name, classes=blk.integer("classes", lo=2), **paths,
                      synthetic=read_synthetic(blk.block("synthetic")) if blk.has("synthetic") else None,
                      schedule=blk.name("schedule", default="default"), scratch=scratch, bases=tuple(bases))
