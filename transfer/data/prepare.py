"""Everything a plan's nets read before training: split lists, LMDBs, means, net files.

The stages run in the order of DESIGN.md, each skipping what is already done:
images (the synthetic set, for plans that declare one; ImageNet is the user's) -> class splits
-> per-dataset file lists -> the whole-set LMDBs -> derived LMDBs (no second decode) -> means
-> prototxt and solver files.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from . import budgets, ilsvrc, labelsets, splits, synthetic, targets
from .build import build
from .dbwrite import db_bytes, free_space, to_write
from .derive import derive, read_label_map, relabel
from .means import update_mean
from ..plan import netfiles as nets
from ..core import argtypes
from ..core.errors import NoSpaceError, TransferError
from ..core.console import stage
from ..core.files import atomic_write, digest, repo_path, size_text
from ..plan.model import Plan, load_plan

WHOLE = "all"     # the dataset of every class: built from the images, the others derive from it
SHUFFLE_SEED = 0  # training databases are shuffled, as the released convert_imageset runs were


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
            wnids = list(splits.load_split_dir(split_dir).wnids)
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


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


@dataclass(frozen=True)
class DiskEstimate:
    """What a plan's databases take, before any is written."""

    images: int                 # Datums in the databases that will be copies (linked and viewed sets: none)
    total: int                  # their bytes on disk
    to_write: int               # bytes of the databases not written yet (the rest is there already)
    linked: tuple[str, ...]     # sets whose training list is the whole set's: linked to it, no copy

    def text(self) -> str:
        out = f"{self.images:,} images, about {size_text(self.total)}"
        if self.to_write != self.total:
            out += f" ({size_text(self.to_write)} still to write)"
        if self.linked:
            out += f"; linked to {WHOLE} (their list is the whole set's, no copy): {', '.join(self.linked)}"
        return out


def disk_estimate(plan: Plan, train_list: Path, val_list: Path, kinds: dict[str, list[str]], lists: Path,
                  val_sets: list[str]) -> DiskEstimate:
    """What the databases will take, from the lists already written (`lists`, `val_sets`: the sets with a
    validation list of their own): each derived set copies its Datums, except a set whose training list
    is the whole one (linked, as _derived does) and a label set read as a view."""
    shape = (3, plan.model.image_size, plan.model.image_size)
    n_train, n_val = _lines(train_list), _lines(val_list)
    total = splits.load_split_dir(repo_path(plan.dirs.split)).num_classes
    whole_sha = digest(train_list)
    validated = {n.val_dataset for n in plan.nets}
    views = view_datasets(plan)
    parts = [(plan.dataset(WHOLE).train, n_train), (plan.dataset(WHOLE).val, n_val)]
    linked = []
    for name in kinds.get("list", ()):
        files, own = plan.dataset(name), lists / "train" / name / "files.txt"
        if digest(own) == whole_sha:
            linked.append(name)
        else:
            parts.append((files.train, _lines(own)))
        if name in val_sets:
            parts.append((files.val, _lines(lists / "val" / name / "files.txt")))
        elif budgets.is_budget_name(name) and name in validated:   # the whole val set of its classes
            parts.append((files.val, n_val * plan.datasets[name] // total))
    for name in kinds.get("labelset", ()):   # a relabelled copy of the whole set, or a view (no copy)
        if name not in views:
            files = plan.dataset(name)
            parts += [(files.train, n_train)] + ([(files.val, n_val)] if name in validated else [])
    images = sum(n for _, n in parts)
    return DiskEstimate(images, sum(db_bytes(n, shape) for _, n in parts),
                        sum(to_write(db, n, shape) for db, n in parts), tuple(linked))


def _check_disk(plan: Plan, estimate: DiskEstimate) -> None:
    """Refuse a plan's data the disk cannot hold, before any database is written."""
    free, where = free_space(repo_path(plan.dirs.data))
    if estimate.to_write > free:
        raise NoSpaceError(f"plan {plan.name}'s databases need about {size_text(estimate.to_write)} more under "
                           f"{repo_path(plan.dirs.data)} ({estimate.text()}), and {where} has {size_text(free)} "
                           "free; free space, or give the plan another data_dir")


def _link(path: Path, target: Path) -> None:
    """A relative symlink path -> target (replacing an older link, never a real file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(target, path.parent)
    if path.is_symlink() and os.readlink(path) == rel:
        return
    if path.exists() and not path.is_symlink():
        raise TransferError(f"{path} exists and is not a link to {target}; remove it to share {target}")
    path.unlink(missing_ok=True)
    path.symlink_to(rel)


def _derived(plan: Plan, name: str, lists: Path, whole_sha: str, train_only: bool, n_classes: int) -> None:
    """A data set's databases, derived from the whole set's (or linked to them, when equal)."""
    whole, out = plan.dataset(WHOLE), plan.dataset(name)
    train_list = lists / "train" / name / "files.txt"
    if digest(train_list) == whole_sha:
        # e.g. reduced1300 keeps every image: the derived database would be the whole one again
        # (some 250 GB for ImageNet), so it is the whole one, mean included.
        log.info(f"dataset {name}: its training list is the whole set's, image for image (it keeps every "
                 f"image of every class): linked to {whole.train} and its mean, no copy")
        _link(out.train, whole.train)
        _link(out.mean, whole.mean)
    else:
        derive(str(whole.train), str(train_list), str(out.train), shuffle=True, seed=SHUFFLE_SEED,
                        num_classes=n_classes)
    if not train_only:
        derive(str(whole.val), str(lists / "val" / name / "files.txt"), str(out.val),
                        num_classes=n_classes)


def _means(plan: Plan, used: list[str]) -> None:
    views = view_datasets(plan)
    for name in [WHOLE] + [d for d in used if d != WHOLE]:  # the whole set's first: others may link it
        files = plan.dataset(name)
        if files.mean.is_symlink() or name in views:   # a view's mean is made with its label map
            continue
        update_mean(files.train, files.mean)


def dataset_kinds(plan: Plan, derived: list[str]) -> dict[str, list[str]]:
    """Derived data sets by how they are made: `list` (cut from the whole list: splits, reduced, budgets),
    `labelset` (the whole set relabelled, transfer/data/labelsets.py) and `target` (the user's own images)."""
    split = splits.load_split_dir(repo_path(plan.dirs.split))
    target_names = {t.name for t in plan.targets}
    out: dict[str, list[str]] = {"list": [], "labelset": [], "target": []}
    for name in derived:
        if name in target_names:
            out["target"].append(name)
        elif name in split.names() or splits.REDUCED_RE.fullmatch(name) or budgets.is_budget_name(name):
            out["list"].append(name)
        else:
            out["labelset"].append(name)
    return out


def view_datasets(plan: Plan) -> set[str]:
    """Data sets the nets read as views (through another set's LMDBs and a label map), not as copies."""
    return {n.target for n in plan.nets if n.files.train_labels} | \
        {n.val_dataset for n in plan.nets if n.files.val_labels}


def _label_sets(plan: Plan, names: list[str], whole_mean: Path) -> None:
    """Each label set's databases: the whole set's Datums relabelled (no decoding)."""
    split, sets = labelsets.load_label_sets(repo_path(plan.dirs.split))
    validated = {n.val_dataset for n in plan.nets}
    views = view_datasets(plan)
    for name in names:
        lset = labelsets.get_label_set(sets, name)
        if lset.num_labels != plan.datasets[name]:
            raise TransferError(f"{plan.path}: datasets.{name}: {plan.datasets[name]} labels declared, but label "
                                f"set {name} has {lset.num_labels} (`transfer labels show {name}`)")
        label_map = labelsets.class_label_map(lset, list(split.wnids))
        whole, out = plan.dataset(WHOLE), plan.dataset(name)
        if name in views:
            # read through the whole set's LMDBs by the Data layer (label_map_file): only the map is written
            log.info(f"dataset {name}: a view of the whole set with {lset.num_labels} labels (no copy)")
            text = "# old new: label set " + name + "\n" + "".join(f"{o} {n}\n" for o, n in sorted(label_map.items()))
            if not out.labels.is_file() or out.labels.read_text() != text:
                atomic_write(out.labels, text)
        else:
            log.info(f"dataset {name}: the whole set relabelled to {lset.num_labels} labels")
            relabel(str(whole.train), label_map, str(out.train), name=name)
            if name in validated:
                relabel(str(whole.val), label_map, str(out.val), name=name)
        if len(label_map) == split.num_classes:
            _link(out.mean, whole_mean)   # the same images: the same mean
        elif name in views:   # made again when the label map or the whole set is newer
            since = max(out.labels, whole.train / "manifest.json", key=lambda p: p.stat().st_mtime)
            update_mean(whole.train, out.mean, labels=set(label_map), since=since)


def _budget_val(plan: Plan, name: str, lists: Path) -> None:
    """A fewer-classes budget is validated on the whole validation set of its classes, relabelled as its list."""
    label_map = read_label_map(lists / "train" / name / "idxmap.txt")
    if len(label_map) != plan.datasets[name]:
        raise TransferError(f"{plan.path}: datasets.{name}: {plan.datasets[name]} classes declared, but its list "
                            f"keeps {len(label_map)} ({lists / 'train' / name / 'idxmap.txt'})")
    relabel(str(plan.dataset(WHOLE).val), label_map, str(plan.dataset(name).val), name=name)


def _target(plan: Plan, name: str, jobs: int) -> None:
    spec = next(t for t in plan.targets if t.name == name)
    files = plan.dataset(name)
    train_root, train_list, val_root, val_list = targets.target_lists(spec, files.train.parent)
    log.info(f"target dataset {name} ({spec.classes} classes) -> {files.train.parent}")
    size = plan.model.image_size
    build(str(train_list), str(train_root), str(files.train), size=size, shuffle=True,
                   seed=SHUFFLE_SEED, jobs=jobs, num_classes=spec.classes)
    build(str(val_list), str(val_root), str(files.val), size=size, jobs=jobs, num_classes=spec.classes)


def prepare_plan_data(plan: Plan, train_root: str | None = None, train_list: str | None = None,
                      val_root: str | None = None, val_list: str | None = None, jobs: int = 0,
                      imagenet: str | None = None, devkit: str | None = None) -> None:
    """Make every dataset the plan's nets train or validate on, then their net files."""
    train_root_p, train_whole, val_root_p, val_whole = image_source(plan, train_root, train_list,
                                                                    val_root, val_list, imagenet, devkit)
    split_dir = repo_path(plan.dirs.split)
    if plan.synthetic:
        splits.make_splits(out=split_dir, num_classes=plan.synthetic.classes)
    size = plan.model.image_size
    used = sorted({n.target for n in plan.nets} | {n.val_dataset for n in plan.nets} | {WHOLE})
    derived = [d for d in used if d != WHOLE]
    kinds = dataset_kinds(plan, derived)
    validated = {n.val_dataset for n in plan.nets}
    # Validated on another set (the reduced sets and per-class budgets: on the whole validation set).
    train_only = [d for d in kinds["list"] if d not in validated]
    lists = repo_path(plan.dirs.data) / "lists"
    splits.write_lists(train_whole, lists / "train", kinds["list"], split_dir)
    val_lists = [d for d in kinds["list"] if d not in train_only and not budgets.is_budget_name(d)]
    splits.write_lists(val_whole, lists / "val", val_lists, split_dir)
    estimate = disk_estimate(plan, train_whole, val_whole, kinds, lists, val_lists)
    log.info(f"datasets of plan {plan.name}: {', '.join(used)} -> {repo_path(plan.dirs.data)}; {estimate.text()}"
             + ("; the target sets' images not counted" if kinds["target"] else ""))
    _check_disk(plan, estimate)

    whole = plan.dataset(WHOLE)
    split = splits.load_split_dir(split_dir)
    total = split.num_classes  # every label checked against the class count of the set it enters
    log.info(f"whole-set LMDBs ({size}x{size}) -> {whole.train.parent}")
    build(str(train_whole), str(train_root_p), str(whole.train), size=size, shuffle=True,
                   seed=SHUFFLE_SEED, jobs=jobs, num_classes=total)
    build(str(val_whole), str(val_root_p), str(whole.val), size=size, jobs=jobs, num_classes=total)
    whole_sha = digest(train_whole)
    for name in kinds["list"]:
        log.info(f"dataset {name}")
        # labels must lie below the class count the plan declares for the set they enter
        _derived(plan, name, lists, whole_sha, name not in val_lists, plan.datasets.get(name, total))
        if budgets.is_budget_name(name) and name in validated:
            _budget_val(plan, name, lists)
    if kinds["labelset"]:
        update_mean(whole.train, whole.mean)
        _label_sets(plan, kinds["labelset"], whole.mean)
    for name in kinds["target"]:
        _target(plan, name, jobs)
    _means(plan, used)
    changed = nets.write_plan(plan)
    log.info(f"net files: {len(changed)} written for {len(plan.nets)} nets")


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
