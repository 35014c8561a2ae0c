"""Caffe's ILSVRC2012 lists written from the dataset as distributed, no auxiliary download needed.

Caffe's `get_ilsvrc_aux.sh` fetches train.txt, val.txt and synsets.txt; this module writes the same
files from what the ImageNet site gives:

    IMAGENET/train/<wnid>/<wnid>_<n>.JPEG                    one folder a class
    IMAGENET/val/ILSVRC2012_val_<8 digits>.JPEG              one flat folder
    DEVKIT/data/meta.mat                                     `synsets`: ILSVRC2012_ID, WNID, words, ...
    DEVKIT/data/ILSVRC2012_validation_ground_truth.txt       one ILSVRC2012_ID a line, image 1 first

Labels are positions in synsets.txt (the wnids sorted), not the devkit's ILSVRC2012_ID (meta.mat's own
order): val image 1's ground truth is ID 490, n01751748, which is label 65, as Caffe's val.txt says.
train.txt: classes in synsets.txt order, each folder's files by name (byte order).
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.console import stage
from ..core.errors import TransferError
from ..core.files import atomic_write, not_a_file

log = stage("ilsvrc")

META = Path("data") / "meta.mat"
GROUND_TRUTH = Path("data") / "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_NAMES = ("ILSVRC2012_devkit_t12", "ILSVRC2012_devkit", "devkit")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
_WNID = re.compile(r"n\d{8}")
_VAL_NAME = "ILSVRC2012_val_{:08d}.JPEG"
_SAFE_NAME = re.compile(r"[^\s]+")  # a Caffe list line splits at its last space


@dataclass(frozen=True)
class Synset:
    ilsvrc_id: int     # 1-based, meta.mat order
    wnid: str
    words: str


def find_devkit(imagenet: Path) -> Path:
    """The devkit folder inside or beside IMAGENET (the folder holding data/meta.mat)."""
    for base in (imagenet, imagenet.parent):
        for name in DEVKIT_NAMES:
            if (base / name / META).is_file():
                return base / name
    if (imagenet / META).is_file():
        return imagenet
    raise TransferError(f"no ILSVRC2012 devkit found in or beside {imagenet} (looked for "
                        f"{'/, '.join(DEVKIT_NAMES)}/ holding {META}); pass its folder with --devkit")


def read_meta(path: str | os.PathLike) -> list[Synset]:
    """The leaf classes of a devkit's meta.mat (num_children 0), by ILSVRC2012_ID."""
    import numpy as np  # noqa: PLC0415
    from scipy.io import loadmat  # noqa: PLC0415 (only this on-ramp needs scipy)

    path = Path(path)
    try:
        raw = loadmat(str(path), squeeze_me=True)
    except Exception as exc:  # noqa: BLE001 (scipy raises several types for a file it cannot read)
        raise TransferError(f"{path}: not a readable MATLAB file ({exc})") from None
    if "synsets" not in raw:
        raise TransferError(f"{path}: no 'synsets' variable (has {', '.join(k for k in raw if not k.startswith('__'))})")
    syn = np.atleast_1d(raw["synsets"])
    need = ("ILSVRC2012_ID", "WNID", "words", "num_children")
    fields = syn.dtype.names or ()
    missing = [f for f in need if f not in fields]
    if missing:
        raise TransferError(f"{path}: 'synsets' lacks the field(s) {', '.join(missing)} (has {', '.join(fields)})")
    leaves: list[Synset] = []
    seen: dict[str, int] = {}
    for row, s in enumerate(syn, 1):
        try:
            sid, children = int(s["ILSVRC2012_ID"]), int(s["num_children"])
        except (TypeError, ValueError):
            raise TransferError(f"{path}: synsets({row}) has ILSVRC2012_ID {s['ILSVRC2012_ID']!r}, "
                                f"num_children {s['num_children']!r}: not numbers") from None
        if children:
            continue  # an inner WordNet node, not a class
        wnid = str(s["WNID"])
        if not _WNID.fullmatch(wnid):
            raise TransferError(f"{path}: synsets({row}) WNID {wnid!r} is not a WordNet id (n + 8 digits)")
        if wnid in seen:
            raise TransferError(f"{path}: WNID {wnid} is class {seen[wnid]} and {sid}")
        seen[wnid] = sid
        leaves.append(Synset(sid, wnid, str(s["words"])))
    leaves.sort(key=lambda c: c.ilsvrc_id)
    ids = [c.ilsvrc_id for c in leaves]
    if ids != list(range(1, len(ids) + 1)):
        gap = next(i for i, x in enumerate(ids, 1) if x != i) if ids else 1
        raise TransferError(f"{path}: the classes' ILSVRC2012_IDs are not 1..{len(ids)} (ID {gap} is missing "
                            "or repeated)")
    return leaves


def read_ground_truth(path: str | os.PathLike, num_classes: int) -> list[int]:
    """ILSVRC2012_IDs of the validation images, image 1 first; each checked in 1..num_classes."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("ascii")
    except OSError as exc:
        raise TransferError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise TransferError(f"{path}: not a text file of numbers (byte {exc.start})") from None
    ids = []
    for n, line in enumerate(text.splitlines(), 1):
        word = line.strip()
        if not word.isdigit() or not 1 <= int(word) <= num_classes:
            raise TransferError(f"{path}:{n}: expected an ILSVRC2012_ID in 1..{num_classes}, got {line!r}")
        ids.append(int(word))
    if not ids:
        raise TransferError(f"{path} holds no ground truth")
    return ids


def _regular(entry: os.DirEntry) -> bool:
    """A regular file, or a link to one (a link that loops or points nowhere, a folder: not)."""
    try:
        return entry.is_file()
    except OSError:   # ELOOP: DirEntry.is_file only hides a missing target
        return False


def _images(folder: Path) -> tuple[list[str], int]:
    """Image file names in a folder, sorted bytewise, and how many other entries were left out."""
    names, other = [], 0
    with os.scandir(folder) as it:
        for e in it:
            if e.name.startswith(".") or Path(e.name).suffix.lower() not in IMAGE_SUFFIXES:
                other += 1
                continue
            if not _SAFE_NAME.fullmatch(e.name):
                raise TransferError(f"{folder / e.name!r}: a space or newline in a file name cannot go in a "
                                    "Caffe list; rename it")
            if not _regular(e):
                raise TransferError(f"{folder / e.name}: {not_a_file(folder / e.name)}, not an image file; "
                                    "remove it or fix the link")
            names.append(e.name)
    return sorted(names), other


def train_lines(train_dir: Path, wnids: list[str]) -> list[str]:
    """Caffe's train.txt: `wnid/file label`, classes in synsets.txt order, files by name."""
    if not train_dir.is_dir():
        raise TransferError(f"{train_dir}: no such folder (the training images, one folder a class)")
    present = {e.name for e in os.scandir(train_dir) if e.is_dir()}
    missing = [w for w in wnids if w not in present]
    if missing:
        raise TransferError(f"{train_dir}: {len(missing)} class folder(s) missing, e.g. {missing[0]} "
                            "(unpack ILSVRC2012_img_train.tar and each class's tar inside it)")
    extra = sorted(present - set(wnids))
    if extra:
        raise TransferError(f"{train_dir}/{extra[0]}: not a class of the devkit"
                            + (f" (and {len(extra) - 1} more folders)" if len(extra) > 1 else ""))
    lines: list[str] = []
    ignored = 0
    for label, wnid in enumerate(wnids):
        names, other = _images(train_dir / wnid)
        ignored += other
        if not names:
            raise TransferError(f"{train_dir / wnid}: no images (is {wnid}.tar still packed?)")
        lines.extend(f"{wnid}/{name} {label}" for name in names)
    if ignored:
        log.info("left out %d files of %s that are not images", ignored, train_dir)
    return lines


def val_lines(val_dir: Path, ground_truth: list[int], labels: dict[int, int]) -> list[str]:
    """Caffe's val.txt: `ILSVRC2012_val_00000001.JPEG label`, one line an image in ID order."""
    if not val_dir.is_dir():
        raise TransferError(f"{val_dir}: no such folder (the validation images, one flat folder)")
    present = set(_images(val_dir)[0])
    names = [_VAL_NAME.format(i) for i in range(1, len(ground_truth) + 1)]
    missing = [n for n in names if n not in present]
    if missing:
        raise TransferError(f"{val_dir}: {len(missing)} of the {len(names)} images the ground truth "
                            f"lists are missing, e.g. {missing[0]} (a val/ sorted into class folders is "
                            "not the distributed layout; pass your own list with --val-list)")
    return [f"{name} {labels[sid]}" for name, sid in zip(names, ground_truth)]


def caffe_lists(imagenet: str | os.PathLike, devkit: str | os.PathLike | None = None,
                wnids: list[str] | None = None) -> dict[str, str]:
    """{'train.txt', 'val.txt', 'synsets.txt', 'synset_words.txt'}: file texts as Caffe's aux files.

    `wnids`: the class order labels follow (a split directory's synsets.txt); it must hold the devkit's
    classes. Default: the devkit's wnids sorted, which is Caffe's synsets.txt."""
    imagenet = Path(imagenet)
    if not imagenet.is_dir():
        raise TransferError(f"{imagenet}: no such folder (ILSVRC2012 with train/ and val/)")
    kit = Path(devkit) if devkit else find_devkit(imagenet)
    for f in (META, GROUND_TRUTH):
        if not (kit / f).is_file():
            raise TransferError(f"{kit / f}: no such file (the ILSVRC2012 devkit's {f.name})")
    synsets = read_meta(kit / META)
    by_wnid = {c.wnid: c for c in synsets}
    order = sorted(by_wnid) if wnids is None else list(wnids)
    if set(order) != set(by_wnid) or len(order) != len(by_wnid):
        only_devkit = sorted(set(by_wnid) - set(order))
        only_list = sorted(set(order) - set(by_wnid))
        raise TransferError(f"{kit / META} has {len(by_wnid)} classes, the class list {len(order)}"
                            + (f"; only in the devkit: {only_devkit[0]}" if only_devkit else "")
                            + (f"; only in the class list: {only_list[0]}" if only_list else ""))
    label_of = {by_wnid[w].ilsvrc_id: i for i, w in enumerate(order)}
    truth = read_ground_truth(kit / GROUND_TRUTH, len(synsets))
    train = train_lines(imagenet / "train", order)
    val = val_lines(imagenet / "val", truth, label_of)
    return {"train.txt": "\n".join(train) + "\n", "val.txt": "\n".join(val) + "\n",
            "synsets.txt": "".join(f"{w}\n" for w in order),
            "synset_words.txt": "".join(f"{w} {by_wnid[w].words}\n" for w in order)}


def write_caffe_lists(imagenet: str | os.PathLike, out: str | os.PathLike,
                      devkit: str | os.PathLike | None = None, wnids: list[str] | None = None) -> dict[str, Path]:
    """Write Caffe's lists into `out` (atomic); an existing file with other content is refused, never
    replaced (a database may have been built from it). Returns {name: path}."""
    out = Path(out)
    texts = caffe_lists(imagenet, devkit, wnids)
    paths = {name: out / name for name in texts}
    clash = [p for name, p in paths.items() if p.is_file() and p.read_text() != texts[name]]
    if clash:
        raise TransferError(f"{clash[0]} exists with other content than {imagenet} gives now; "
                            "delete it to write it again")
    for name, p in paths.items():
        if not p.is_file():
            atomic_write(p, texts[name])
    return paths


def _cmd_lists(a: argparse.Namespace) -> int:
    paths = write_caffe_lists(a.imagenet, a.out, a.devkit)
    for name in ("train.txt", "val.txt"):
        with open(paths[name], "rb") as f:
            n = sum(1 for _ in f)
        print(f"{paths[name]}: {n} images")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ilsvrc", help="ILSVRC2012 as distributed: write Caffe's train.txt and val.txt")
    s = p.add_subparsers(dest="ilsvrc_command", metavar="SUBCOMMAND")
    s.required = True
    lists = s.add_parser("lists", help="Caffe's train.txt, val.txt, synsets.txt from train/, val/ and the devkit",
                         description="Labels follow synsets.txt (the wnids sorted), as Caffe's own lists.")
    lists.add_argument("--imagenet", required=True, metavar="DIR",
                       help="folder with train/ (one folder a class) and val/ (the flat folder of 50,000 JPEGs)")
    lists.add_argument("--devkit", metavar="DIR",
                       help="ILSVRC2012 devkit folder holding data/meta.mat and "
                            "data/ILSVRC2012_validation_ground_truth.txt (default: ILSVRC2012_devkit_t12 "
                            "in or beside --imagenet)")
    lists.add_argument("--out", required=True, metavar="DIR", help="folder to write the lists into")
    lists.set_defaults(func=_cmd_lists)
