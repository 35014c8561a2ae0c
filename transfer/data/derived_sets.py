"""The databases of data sets derived from the whole set's, by kind (transfer/plan/datasets.py):
cut by a file list (no second decode), relabelled (label sets, class budgets' validation), or read
through the whole set's databases with a label map (views); their means; and what they cost on disk.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import labelsets
from ..core.console import stage
from ..core.errors import NoSpaceError, TransferError
from ..core.files import atomic_write, digest, repo_path, size_text
from ..plan.datasets import WHOLE, DatasetSpec, Kind
from ..plan.model import Plan
from .dbwrite import db_bytes, free_space, to_write
from .derive import derive, read_label_map, relabel
from .means import update_mean

SHUFFLE_SEED = 0  # training databases are shuffled, as the released convert_imageset runs were

log = stage("prepare")


def link(path: Path, target: Path) -> None:
    """A relative symlink path -> target (replacing an older link, never a real file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(target, path.parent)
    if path.is_symlink() and os.readlink(path) == rel:
        return
    if path.exists() and not path.is_symlink():
        raise TransferError(f"{path} exists and is not a link to {target}; remove it to share {target}")
    path.unlink(missing_ok=True)
    path.symlink_to(rel)


def same_as_whole(lists: Path, spec: DatasetSpec, whole_sha: str) -> bool:
    """Whether a cut set's training list keeps every image of the whole set (e.g. reduced1300 on ImageNet)."""
    return digest(lists / "train" / spec.name / "files.txt") == whole_sha


def from_list(plan: Plan, spec: DatasetSpec, lists: Path, whole_sha: str, with_val: bool, n_classes: int) -> None:
    """A cut set's databases, derived from the whole set's (or linked to them, when equal)."""
    whole, out = plan.dataset(WHOLE), plan.dataset(spec.name)
    if same_as_whole(lists, spec, whole_sha):
        # the derived database would be the whole one again (some 250 GB for ImageNet): link it, mean included
        log.info(f"dataset {spec.name}: its training list is the whole set's, image for image (it keeps every "
                 f"image of every class): linked to {whole.train} and its mean, no copy")
        link(out.train, whole.train)
        link(out.mean, whole.mean)
    else:
        derive(str(whole.train), str(lists / "train" / spec.name / "files.txt"), str(out.train),
               shuffle=True, seed=SHUFFLE_SEED, num_classes=n_classes)
    if with_val:
        derive(str(whole.val), str(lists / "val" / spec.name / "files.txt"), str(out.val), num_classes=n_classes)


def class_budget_val(plan: Plan, spec: DatasetSpec, lists: Path) -> None:
    """A class budget is validated on the whole validation set of its classes, relabelled as its list."""
    idxmap = lists / "train" / spec.name / "idxmap.txt"
    label_map = read_label_map(idxmap)
    if len(label_map) != spec.classes:
        raise TransferError(f"{plan.path}: datasets.{spec.name}: {spec.classes} classes declared, but its list "
                            f"keeps {len(label_map)} ({idxmap})")
    relabel(str(plan.dataset(WHOLE).val), label_map, str(plan.dataset(spec.name).val), name=spec.name)


def label_sets(plan: Plan, specs: list[DatasetSpec], split_dir: Path, validated: set[str]) -> None:
    """Each label set's databases: the whole set's Datums relabelled (no decoding), or only its label map
    where the nets read it as a view."""
    split, sets = labelsets.load_label_sets(split_dir)
    whole = plan.dataset(WHOLE)
    for spec in specs:
        lset = labelsets.get_label_set(sets, spec.name)
        if lset.num_labels != spec.classes:
            raise TransferError(f"{plan.path}: datasets.{spec.name}: {spec.classes} labels declared, but label "
                                f"set {spec.name} has {lset.num_labels} (`transfer labels show {spec.name}`)")
        label_map = labelsets.class_label_map(lset, list(split.wnids))
        out = plan.dataset(spec.name)
        if spec.view:
            log.info(f"dataset {spec.name}: a view of the whole set with {lset.num_labels} labels (no copy)")
            text = f"# old new: label set {spec.name}\n" + "".join(f"{o} {n}\n" for o, n in sorted(label_map.items()))
            if not out.labels.is_file() or out.labels.read_text() != text:
                atomic_write(out.labels, text)
        else:
            log.info(f"dataset {spec.name}: the whole set relabelled to {lset.num_labels} labels")
            relabel(str(whole.train), label_map, str(out.train), name=spec.name)
            if spec.name in validated:
                relabel(str(whole.val), label_map, str(out.val), name=spec.name)
        if len(label_map) == split.num_classes:
            link(out.mean, whole.mean)   # the same images: the same mean
        elif spec.view:   # made again when the label map or the whole set is newer
            since = max(out.labels, whole.train / "manifest.json", key=lambda p: p.stat().st_mtime)
            update_mean(whole.train, out.mean, labels=set(label_map), since=since)


def means(plan: Plan, used: list[DatasetSpec]) -> None:
    """The mean of every set a net trains on (the whole set's first: others may link it); a view's mean
    is made with its label map (label_sets)."""
    for spec in sorted(used, key=lambda s: s.kind != Kind.WHOLE):
        files = plan.dataset(spec.name)
        if files.mean.is_symlink() or spec.view:
            continue
        update_mean(files.train, files.mean)


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


def disk_estimate(plan: Plan, train_whole: Path, val_whole: Path, lists: Path, cut: list[DatasetSpec],
                  with_val: list[str], other: list[DatasetSpec], validated: set[str]) -> DiskEstimate:
    """What the databases will take, counted from the file lists before any database is written: each
    derived set copies its Datums; a set linked to the whole set's database or read as a view costs nothing."""
    shape = (3, plan.model.image_size, plan.model.image_size)
    n_train, n_val = _lines(train_whole), _lines(val_whole)
    whole_sha, whole = digest(train_whole), plan.dataset(WHOLE)
    parts = [(whole.train, n_train), (whole.val, n_val)]
    linked = []
    for spec in cut:
        files = plan.dataset(spec.name)
        if same_as_whole(lists, spec, whole_sha):
            linked.append(spec.name)
        else:
            parts.append((files.train, _lines(lists / "train" / spec.name / "files.txt")))
        if spec.name in with_val:
            parts.append((files.val, _lines(lists / "val" / spec.name / "files.txt")))
        elif spec.kind == Kind.CLASS_BUDGET and spec.name in validated:   # the whole val set of its classes
            parts.append((files.val, n_val * (spec.classes or 0) // max(1, plan.whole.classes or 1)))
    for spec in other:   # a label set: a relabelled copy of the whole set, or a view (no copy)
        if spec.kind == Kind.LABELSET and not spec.view:
            files = plan.dataset(spec.name)
            parts += [(files.train, n_train)] + ([(files.val, n_val)] if spec.name in validated else [])
    return DiskEstimate(sum(n for _, n in parts), sum(db_bytes(n, shape) for _, n in parts),
                        sum(to_write(db, n, shape) for db, n in parts), tuple(linked))


def check_disk(plan: Plan, estimate: DiskEstimate) -> None:
    """Refuse a plan's data the disk cannot hold, before any database is written."""
    free, where = free_space(repo_path(plan.dirs.data))
    if estimate.to_write > free:
        raise NoSpaceError(f"plan {plan.name}'s databases need about {size_text(estimate.to_write)} more under "
                           f"{repo_path(plan.dirs.data)} ({estimate.text()}), and {where} has {size_text(free)} "
                           "free; free space, or give the plan another data_dir")
