"""Caffe file lists of a plan's data sets, cut from the whole set's list (`path label` a line).

`write_lists` writes one `files.txt` (+ `idxmap.txt` where classes are relabelled) per data set, byte for byte
as the released make_reduced_dataset.py did, dispatching on the data set's kind (transfer/plan/datasets.py):
a class list of the split directory, the first N images of every class, or one of Huh et al.'s budgets.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from . import budgets
from ..core.errors import TransferError
from ..core.files import digest
from ..plan.datasets import DatasetSpec, Kind
from .classlists import SplitSet, load_split_dir, write_all

REDUCED_COUNTS = (1300, 1000, 750, 500, 250, 100, 50, 25, 10, 5, 2, 1)
IDXMAP_HEADER = "# Orig_idx new_idx\n"

# md5 of the released lists' files.txt (yosinski/convnet_transfer, ilsvrc12/make_reduced_datasets.sh), keyed by
# the md5 of the whole list they were cut from. Released names differ from ours: halfnatmanA is `natural`,
# halfnatmanB `manmade`; reduced1300 is the whole list itself (no ILSVRC2012 class has more than 1300 images).
RELEASED_MD5 = {
    "3be8e5d8cbd932cc295ec175d5110921": {   # whole_train/files.txt
        "half0A": "83f4e664c68213ba43dd9b4465dd7d4e", "half0B": "0a9e2917a5f10bdbf22974f4b1fc17ce",
        "half1A": "8926a880165726455c5639e4813a2d3b", "half1B": "b95d534d95151f4fae7610d25d6377fd",
        "half2A": "61ffa67fe88e307ac1c5639a087fdf1b", "half2B": "ddda030205cfd7960498d9300f5c3deb",
        "half3A": "32369aaeb73012881558f0f16d932b95", "half3B": "0017c6f301f33db91008663985b6f826",
        "natural": "5fb4569a4f3be3897f490ee21b356256", "manmade": "4ba839156cd6c7f33d8ada94e4331887",
        "reduced0001": "803a36f02b511db01532a604f5704ea8", "reduced0002": "af6addb779610611d460f0ade2931f2f",
        "reduced0005": "abdce3ff7f7933b0323c1074de7a734d", "reduced0010": "d3752c71b0facde0173876293ce632fd",
        "reduced0025": "df313d05c0256010b96870f5707f0417", "reduced0050": "34e5285b75e5448ff82bc6b0ca0c28f7",
        "reduced0100": "8376e82b043586424b8bebf4fd4a8af2", "reduced0250": "e83abe901d08926ef62956be8628dbd0",
        "reduced0500": "d32ff1c8817548f0edf5557b32ca5e0e", "reduced0750": "5bb58aecc081ec6c27ec68bbc755bb58",
        "reduced1000": "94fce01f9b4cb80bdb3fbf2a440c26e6", "reduced1300": "3be8e5d8cbd932cc295ec175d5110921",
    },
    "b6284a7c08fba47457c2c1f6049a156e": {   # whole_valid/files.txt
        "half0A": "2f10009e20d77eb7007cf70674958b94", "half0B": "cce39b383d681345c873faf2c0c28d33",
        "half1A": "9ab48b6420504e32ff4498e7d8569f8b", "half1B": "57522f5e2aa69547846089f5197c8a6b",
        "half2A": "03d05b6565ab9176baccdd05d746bfd1", "half2B": "18de8b37378e07e60dc602b6130eeeb2",
        "half3A": "46086440ddde128f169f23331998499d", "half3B": "e5f9f0895fd0d49a8ac0b804ec891282",
        "natural": "4fb63c72229ba07106a558127192cb9f", "manmade": "f03be5732fb6bc7928ee53397b043613",
    },
}


def read_whole_list(path: Path, num_classes: int) -> tuple[list[str], list[int]]:
    """Image paths and labels of a Caffe list (`path label` a line), every label in 0..num_classes-1;
    UTF-8 without a byte-order mark, each fault named with file:line."""
    paths: list[str] = []
    labels: list[int] = []
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise TransferError(f"{path}: cannot read the whole list ({exc.strerror})") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raise TransferError(f"{path}:1: starts with a UTF-8 byte-order mark, which would become part "
                                    "of the first path; save the list without it")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TransferError(f"{path}:{lineno}: not UTF-8 text (byte {raw[exc.start]:#04x})") from None
            # The released script read lines with `jpg_file, label = line.split()`: exactly two fields.
            fields = line.split()
            if len(fields) != 2 or not re.fullmatch(r"[+-]?\d+", fields[1], re.ASCII):
                raise TransferError(f"{path}:{lineno}: expected 'path label', got {line.rstrip(chr(10))!r}")
            label = int(fields[1])
            if not 0 <= label < num_classes:
                raise TransferError(f"{path}:{lineno}: label {label} outside 0..{num_classes - 1}")
            paths.append(fields[0])
            labels.append(label)
    return paths, labels


def _idxmap(classes: list[int]) -> str:
    return IDXMAP_HEADER + "".join(f"{orig} {i}\n" for i, orig in enumerate(classes))


def _relabelled(paths: list[str], labels: list[int], keep: list[int] | None, classes: list[int]) -> dict[str, str]:
    """The lines `keep` (every line where None) of the classes `classes`, relabelled 0..K-1 in that order."""
    new = {orig: i for i, orig in enumerate(classes)}
    lines = range(len(paths)) if keep is None else keep
    return {"files.txt": "".join(f"{paths[i]} {new[labels[i]]}\n" for i in lines if labels[i] in new),
            "idxmap.txt": _idxmap(classes)}


def _first_per_class(paths: list[str], labels: list[int], num_classes: int, keep: int) -> str:
    """Every class and label kept: the first `keep` lines of each class, in list order."""
    seen = [0] * num_classes
    out = []
    for p, label in zip(paths, labels):
        if seen[label] < keep:
            seen[label] += 1
            out.append(f"{p} {label}\n")
    return "".join(out)


def list_files(spec: DatasetSpec, split: SplitSet, whole_list: Path, paths: list[str], labels: list[int],
               counts: list[int]) -> dict[str, str]:
    """{'files.txt': ..., 'idxmap.txt': ...} of one data set (reduced sets have no idxmap, as released)."""
    if spec.kind in (Kind.SAMPLE, Kind.CLASS_BUDGET):
        keep, classes = budgets.budget_lines(spec, labels, split.num_classes)
        if classes is None:
            return {"files.txt": "".join(f"{paths[i]} {labels[i]}\n" for i in keep)}
        return _relabelled(paths, labels, keep, classes)
    if spec.kind == Kind.REDUCED:
        classes = list(range(split.num_classes))
    elif spec.kind == Kind.CLASSES and spec.class_list:
        classes = split.classes(spec.class_list)
    else:
        raise TransferError(f"{spec.describe()}: not cut from the whole list")
    empty = [i for i in classes if counts[i] == 0]
    if empty:
        raise TransferError(f"{whole_list}: class {empty[0]} ({split.describe(empty[0])}) of {spec.name} has no "
                            f"images{f' (nor have {len(empty) - 1} more)' if len(empty) > 1 else ''}")
    if spec.kind == Kind.REDUCED:
        return {"files.txt": _first_per_class(paths, labels, split.num_classes, spec.per_class or 0)}
    return _relabelled(paths, labels, None, classes)


def write_lists(whole_list: Path, out: Path, specs: Sequence[DatasetSpec], split_dir: Path | None = None) -> None:
    """Write out/<name>/files.txt (and idxmap.txt) for each data set, cut from the whole list.

    Existing identical files are left alone; different ones are an error, never overwritten. If the whole list
    is one the released code used, every files.txt is checked against the released md5."""
    whole_list, out = Path(whole_list), Path(out)
    split = load_split_dir(split_dir)
    paths, labels = read_whole_list(whole_list, split.num_classes)
    counts = [0] * split.num_classes
    for label in labels:
        counts[label] += 1
    # Every list is built and compared before anything is written: a clash leaves `out` untouched.
    files: dict[Path, str] = {}
    for spec in specs:
        for fname, text in list_files(spec, split, whole_list, paths, labels, counts).items():
            files[out / spec.name / fname] = text
    write_all(files)
    released = RELEASED_MD5.get(file_md5(whole_list), {})
    for spec in specs:
        if spec.name in released and file_md5(out / spec.name / "files.txt") != released[spec.name]:
            raise TransferError(f"{out / spec.name / 'files.txt'}: md5 differs from the released list's "
                                f"{released[spec.name]} although {whole_list} is the released whole list")


def file_md5(path: Path) -> str:
    return digest(path, "md5")
