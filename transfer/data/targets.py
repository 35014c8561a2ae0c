"""A target dataset's images as Caffe lists: from folders of class folders, the user's lists, or a synthetic set.

Folders: `train/` and `val/` each hold one folder per class; labels number the class folders in sorted
order, and the validation folder must have the same classes. The lists go to <data>/<target>/ and the
LMDBs are built from them like the whole set's (transfer/data/prepare.py).
"""
from __future__ import annotations

from pathlib import Path

from . import synthetic
from ..core.errors import TransferError
from ..core.files import atomic_write, not_a_file, repo_path
from ..plan.spec import TargetSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def folder_list(root: Path, classes: list[str] | None = None) -> tuple[str, list[str]]:
    """(Caffe list text, class names) of a folder of class folders; paths relative to `root`."""
    if not root.is_dir():
        raise TransferError(f"{root}: no such folder (a target's images: one sub-folder per class)")
    found = sorted(d.name for d in root.iterdir() if d.is_dir())
    if classes is not None and found != classes:
        extra, missing = sorted(set(found) - set(classes)), sorted(set(classes) - set(found))
        raise TransferError(f"{root}: class folders differ from the training folders' (extra {extra[:5]}, "
                            f"missing {missing[:5]})")
    lines = []
    for label, name in enumerate(found):
        images = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        odd = next((p for p in images if not_a_file(p) is not None), None)   # a link that loops or to nothing
        if odd is not None:
            raise TransferError(f"{odd}: {not_a_file(odd)}, not an image file; remove it or fix the link")
        if not images:
            raise TransferError(f"{root / name}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        lines += [f"{p.relative_to(root).as_posix()} {label}\n" for p in images]
    return "".join(lines), found


def target_lists(spec: TargetSpec, out_dir: Path) -> tuple[Path, Path, Path, Path]:
    """(train root, train list, val root, val list) of a target, writing lists or images where needed."""
    if spec.synthetic is not None:
        p = spec.synthetic
        where = out_dir / "images"
        synthetic.make_synthetic(where, num_classes=p.classes, train_per_class=p.train_per_class,
                                 val_per_class=p.val_per_class, size=p.size, seed=p.seed)
        got = p.classes
        paths = (where, where / "train.txt", where, where / "val.txt")
    elif spec.train is not None and spec.val is not None:
        train, val = repo_path(spec.train), repo_path(spec.val)
        text, names = folder_list(train)
        val_text, _ = folder_list(val, names)
        got = len(names)
        lists = {out_dir / "train.txt": text, out_dir / "val.txt": val_text,
                 out_dir / "classes.txt": "".join(f"{n}\n" for n in names)}
        for path, body in lists.items():
            if not path.is_file() or path.read_text() != body:
                atomic_write(path, body)
        paths = (train, out_dir / "train.txt", val, out_dir / "val.txt")
    else:
        given = {k: repo_path(getattr(spec, k)) for k in ("train_root", "train_list", "val_root", "val_list")}
        for key, path in given.items():
            if not path.exists():
                raise TransferError(f"targets.{spec.name}.{key}: {path}: no such file or directory")
        labels = {int(line.split()[-1]) for line in given["train_list"].read_text().splitlines() if line.strip()}
        got = max(labels) + 1 if labels else 0
        paths = (given["train_root"], given["train_list"], given["val_root"], given["val_list"])
    if got != spec.classes:
        raise TransferError(f"targets.{spec.name}: the images have {got} classes, the plan says "
                            f"classes: {spec.classes}")
    return paths
