"""Everything a plan's nets read before training: split lists, LMDBs, means, net files.

The stages run in the order of DESIGN.md, each skipping what is already done:
images (the synthetic set, for plans that declare one; ImageNet is the user's) -> class splits
-> per-dataset file lists -> the whole-set LMDBs -> derived LMDBs (no second decode) -> means
-> prototxt and solver files. What each data set is comes from the plan (`DatasetSpec.kind`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import classlists, derived_sets as derived, filelists, ilsvrc, synthetic, targets
from .build import build
from .means import update_mean
from ..core import argtypes
from ..core.console import stage
from ..core.errors import TransferError
from ..core.files import digest, repo_path
from ..plan import netfiles
from ..plan.datasets import WHOLE, DatasetSpec, Kind
from ..plan.load import load_plan
from ..plan.model import Plan
from .derived_sets import SHUFFLE_SEED

log = stage("prepare")


def image_source(plan: Plan, train_root: str | None, train_list: str | None, val_root: str | None,
                 val_list: str | None, imagenet: str | None = None,
                 devkit: str | None = None) -> tuple[Path, Path, Path, Path]:
    """(train root, whole train list, val root, whole val list): the plan's synthetic set or the user's.

    With `imagenet` (ILSVRC2012 as distributed: train/, val/ and the devkit) the roots default to its
    train/ and val/, and a list not given is written as Caffe's own, labels in the split directory's
    synsets.txt order."""
    split_dir = repo_path(plan.dirs.split)
    params = plan.synthetic
    if params:
        log.info("synthetic dataset -> %s", split_dir)
        synthetic.make_synthetic(split_dir, num_classes=params.classes, train_per_class=params.train_per_class,
                                 val_per_class=params.val_per_class, size=params.size, seed=params.seed)
        return split_dir, split_dir / "train.txt", split_dir, split_dir / "val.txt"
    if imagenet:
        train_root = train_root or str(Path(imagenet) / "train")
        val_root = val_root or str(Path(imagenet) / "val")
        if not (train_list and val_list):
            wnids = list(classlists.load_split_dir(split_dir).wnids)
            out = repo_path(plan.dirs.data) / "lists" / "caffe"
            log.info(f"Caffe's lists of {imagenet} -> {out}")
            made = ilsvrc.write_caffe_lists(imagenet, out, devkit, wnids)
            train_list = train_list or str(made["train.txt"])
            val_list = val_list or str(made["val.txt"])
    given = {"--train-root": train_root, "--train-list": train_list, "--val-root": val_root,
             "--val-list": val_list}
    absent = [flag for flag, value in given.items() if not value]
    if absent:
        raise TransferError(f"plan '{plan.name}' has no synthetic dataset: give --imagenet DIR (ILSVRC2012 "
                            f"as distributed, with its devkit), or {' '.join(absent)} "
                            "(image folders and Caffe lists, `path label`, of the whole dataset)")
    for flag, value in given.items():
        if not Path(value).exists():
            raise TransferError(f"{flag} {value}: no such file or directory")
    return Path(train_root), Path(train_list), Path(val_root), Path(val_list)


def _target(plan: Plan, name: str, jobs: int) -> None:
    spec = next(t for t in plan.targets if t.name == name)
    files = plan.dataset(name)
    train_root, train_list, val_root, val_list = targets.target_lists(spec, files.train.parent)
    log.info(f"target dataset {name} ({spec.classes} classes) -> {files.train.parent}")
    size = plan.model.image_size
    build(str(train_list), str(train_root), str(files.train), size=size, shuffle=True,
                   seed=SHUFFLE_SEED, jobs=jobs, num_classes=spec.classes)
    build(str(val_list), str(val_root), str(files.val), size=size, jobs=jobs, num_classes=spec.classes)


def _class_lists(plan: Plan, split_dir: Path) -> None:
    """The split directory's class lists the plan needs: a synthetic set's own, and the random halves of
    further splits (a plan's replicates), drawn as the released ones were."""
    if plan.synthetic:
        classlists.make_splits(out=split_dir, num_classes=plan.synthetic.classes)
    seeds = sorted({s.half[0] for s in plan.datasets.values() if s.half and s.class_list
                    and not (split_dir / f"{s.class_list}.txt").is_file()})
    if seeds:
        log.info(f"random halves of splits {', '.join(map(str, seeds))} -> {split_dir}")
        classlists.write_halves(split_dir, seeds)


def _whole(plan: Plan, roots: tuple[Path, Path, Path, Path], total: int, jobs: int) -> None:
    train_root, train_list, val_root, val_list = roots
    whole, size = plan.dataset(WHOLE), plan.model.image_size
    log.info(f"whole-set LMDBs ({size}x{size}) -> {whole.train.parent}")
    build(str(train_list), str(train_root), str(whole.train), size=size, shuffle=True,
                   seed=SHUFFLE_SEED, jobs=jobs, num_classes=total)
    build(str(val_list), str(val_root), str(whole.val), size=size, jobs=jobs, num_classes=total)


def prepare_plan_data(plan: Plan, train_root: str | None = None, train_list: str | None = None,
                      val_root: str | None = None, val_list: str | None = None, jobs: int = 0,
                      imagenet: str | None = None, devkit: str | None = None) -> None:
    """Make every dataset the plan's nets train or validate on, then their net files."""
    roots = image_source(plan, train_root, train_list, val_root, val_list, imagenet, devkit)
    split_dir = repo_path(plan.dirs.split)
    _class_lists(plan, split_dir)
    used = plan.used_datasets()
    validated = {n.val_dataset for n in plan.nets}
    cut = [s for s in used if s.cut_from_list]
    # Only class lists get validation lists of their own; the others test on the whole set (reduced sets,
    # samples) or on the whole validation set relabelled (class budgets).
    with_val = [s.name for s in cut if s.kind == Kind.CLASSES and s.name in validated]
    lists = repo_path(plan.dirs.data) / "lists"
    filelists.write_lists(roots[1], lists / "train", cut, split_dir)
    filelists.write_lists(roots[3], lists / "val", [s for s in cut if s.name in with_val], split_dir)
    other = [s for s in used if not s.cut_from_list and s.kind != Kind.WHOLE]
    estimate = derived.disk_estimate(plan, roots[1], roots[3], lists, cut, with_val, other, validated)
    log.info(f"datasets of plan {plan.name}: {', '.join(s.name for s in used)} -> {repo_path(plan.dirs.data)}; "
             f"{estimate.text()}" + ("; the target sets' images not counted" if any(s.kind == Kind.TARGET for s in other)
                                     else ""))
    derived.check_disk(plan, estimate)
    total = classlists.load_split_dir(split_dir).num_classes  # every label checked against its set's count
    _whole(plan, roots, total, jobs)
    whole_sha = digest(roots[1])
    for spec in cut:
        log.info(f"dataset {spec.describe()}")
        derived.from_list(plan, spec, lists, whole_sha, spec.name in with_val, spec.classes or total)
        if spec.kind == Kind.CLASS_BUDGET and spec.name in validated:
            derived.class_budget_val(plan, spec, lists)
    _derive_rest(plan, other, split_dir, validated, jobs)
    derived.means(plan, used)
    changed = netfiles.write_plan(plan)
    log.info(f"net files: {len(changed)} written for {len(plan.nets)} nets")


def _derive_rest(plan: Plan, other: list[DatasetSpec], split_dir: Path, validated: set[str], jobs: int) -> None:
    """Label sets (relabelled from the whole set, or views of it) and the user's target datasets."""
    sets = [s for s in other if s.kind == Kind.LABELSET]
    if sets:
        whole = plan.dataset(WHOLE)
        update_mean(whole.train, whole.mean)
        derived.label_sets(plan, sets, split_dir, validated)
    for spec in other:
        if spec.kind == Kind.TARGET:
            _target(plan, spec.name, jobs)
        elif spec.kind != Kind.LABELSET:
            raise TransferError(f"{plan.path}: {spec.describe()}: no way to make it")


def _cmd(args: argparse.Namespace) -> int:
    prepare_plan_data(load_plan(args.plan), args.train_root, args.train_list, args.val_root, args.val_list,
                      args.jobs, args.imagenet, args.devkit)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="make a plan's datasets (lists, LMDBs, means) and net files")
    p.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file")
    p.add_argument("--imagenet", metavar="DIR",
                   help="ILSVRC2012 as distributed: DIR/train/<wnid>/*.JPEG and DIR/val/*.JPEG; the lists "
                        "not given are written as Caffe's (DATA_DIR/lists/caffe/) from these and the devkit")
    p.add_argument("--devkit", metavar="DIR",
                   help="the ILSVRC2012 devkit (data/meta.mat, data/ILSVRC2012_validation_ground_truth.txt); "
                        "default: ILSVRC2012_devkit_t12 in or beside --imagenet")
    p.add_argument("--train-root", help="folder the training list's paths are relative to (e.g. ILSVRC2012/train)")
    p.add_argument("--train-list", help="Caffe list of every training image (path label)")
    p.add_argument("--val-root", help="folder the validation list's paths are relative to")
    p.add_argument("--val-list", help="Caffe list of every validation image")
    p.add_argument("--jobs", type=argtypes.whole(0), default=0, help="decoding processes (0: every core this process may use)")
    p.set_defaults(func=_cmd)
