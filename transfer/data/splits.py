"""Class splits (which classes each dataset holds) and the Caffe file lists derived from them.

A split directory holds `synsets.txt` (class index -> wnid; `synset_words.txt` with names, optional) and one
`<name>.txt` per class list: class indices, one a line, ascending. The repo's `splits/` is the paper's; the
synthetic dataset writes its own. `write_lists` turns a whole-dataset list (`path label` a line) into one
`files.txt` (+ `idxmap.txt`) per split, byte for byte as the released make_reduced_dataset.py did.
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import REPO
from . import wordnet
from ..core import argtypes
from ..core.errors import TransferError
from ..core.files import atomic_write, digest

SPLIT_DIR = REPO / "splits"
HALF_SEEDS = (0, 1, 2, 3)
HALF_NAMES = tuple(f"half{s}{ab}" for s in HALF_SEEDS for ab in "AB")
NATMAN_NAMES = ("manmade", "natural")
DEFAULT_LISTS = HALF_NAMES + NATMAN_NAMES
REDUCED_COUNTS = (1300, 1000, 750, 500, 250, 100, 50, 25, 10, 5, 2, 1)
REDUCED_RE = re.compile(r"reduced(\d{4,})$")   # reduced%04d, as the plan names them
PAIRS = {**{f"half{s}": (f"half{s}A", f"half{s}B") for s in HALF_SEEDS}, "natman": NATMAN_NAMES}
IDXMAP_HEADER = "# Orig_idx new_idx\n"
NOT_LISTS = {"synsets", "synset_words", "README"}

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


# ---------------------------------------------------------------------------------------------- class lists

def random_half(seed: int, num_classes: int) -> tuple[list[int], list[int]]:
    """(A, B): the released random split. A = num_classes // 2 classes, B the rest, both ascending.

    The released script called numpy.random.seed([seed]) (a one-element list: init_by_array, a different stream
    from seed(seed)) and drew with the legacy choice(). A private RandomState seeded the same way draws the same
    numbers without disturbing numpy's global state."""
    rng = np.random.RandomState([seed])
    a = sorted(int(i) for i in rng.choice(np.arange(num_classes), num_classes // 2, replace=False))
    chosen = set(a)
    return a, [i for i in range(num_classes) if i not in chosen]


def format_indices(indices: list[int]) -> str:
    return "".join(f"{i}\n" for i in indices)


def parse_indices(path: Path, num_classes: int | None = None) -> list[int]:
    """Read a class list: one index a line, strictly ascending, each in 0..num_classes-1."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise TransferError(f"{path}: no such class list") from None
    out: list[int] = []
    for lineno, line in enumerate(lines, 1):
        if not re.fullmatch(r"\d+", line.strip()):
            raise TransferError(f"{path}:{lineno}: expected a class index, got {line!r}")
        i = int(line)
        if num_classes is not None and i >= num_classes:
            raise TransferError(f"{path}:{lineno}: class {i} outside 0..{num_classes - 1}")
        if out and i <= out[-1]:
            raise TransferError(f"{path}:{lineno}: class {i} not above the previous {out[-1]} (lists are ascending)")
        out.append(i)
    return out


@dataclass(frozen=True)
class SplitSet:
    """A split directory: its classes (wnids, names) and the class lists it holds."""
    path: Path
    wnids: tuple[str, ...]
    words: tuple[str, ...]    # synset_words.txt names, "" where the directory has none

    @property
    def num_classes(self) -> int:
        return len(self.wnids)

    def names(self) -> list[str]:
        """The class lists present, e.g. ['half0A', ..., 'manmade', 'natural']."""
        return sorted(p.stem for p in self.path.glob("*.txt") if p.stem not in NOT_LISTS)

    def classes(self, name: str) -> list[int]:
        """Ascending class indices (into synsets.txt) of the list `name`."""
        path = self.path / f"{name}.txt"
        if name in NOT_LISTS or not path.is_file():
            raise TransferError(f"no class list '{name}' in {self.path} (has: {', '.join(self.names()) or 'none'})")
        return parse_indices(path, self.num_classes)

    def pair(self, name: str) -> tuple[list[int], list[int]]:
        """The two lists of 'half0'..'half3' or 'natman' (manmade, natural), checked to partition the classes."""
        if name not in PAIRS:
            raise TransferError(f"unknown pair '{name}' (pairs: {', '.join(PAIRS)})")
        a, b = (self.classes(n) for n in PAIRS[name])
        if sorted(a + b) != list(range(self.num_classes)):
            raise TransferError(f"{self.path}: {' and '.join(PAIRS[name])} do not partition the "
                                f"{self.num_classes} classes")
        return a, b

    def describe(self, index: int) -> str:
        return f"{self.wnids[index]} {self.words[index]}".rstrip()


def _read_synsets(path: Path) -> tuple[list[str], list[str]]:
    """wnids of synsets.txt and the names of the synset_words.txt beside it (if any), checked to agree."""
    wnids = [line.strip() for line in path.read_text().splitlines()]
    for lineno, w in enumerate(wnids, 1):
        if not w or " " in w:
            raise TransferError(f"{path}:{lineno}: expected one class id a line, got {w!r}")
    words = [""] * len(wnids)
    words_path = path.parent / "synset_words.txt"
    if words_path.is_file():
        lines = words_path.read_text().splitlines()
        if len(lines) != len(wnids):
            raise TransferError(f"{words_path}: {len(lines)} lines, but {path} has {len(wnids)}")
        for lineno, (line, w) in enumerate(zip(lines, wnids), 1):
            wnid, _, name = line.partition(" ")
            if wnid != w:
                raise TransferError(f"{words_path}:{lineno}: {wnid}, but {path} line {lineno} is {w}")
            words[lineno - 1] = name
    return wnids, words


def load_split_dir(path: str | os.PathLike | None = None) -> SplitSet:
    """The split directory at `path` (default: the repo's splits/, the paper's ILSVRC2012 splits)."""
    root = Path(path) if path is not None else SPLIT_DIR
    synsets = root / "synsets.txt"
    if not synsets.is_file():
        raise TransferError(f"{root} is not a split directory: it has no synsets.txt")
    wnids, words = _read_synsets(synsets)
    return SplitSet(root, tuple(wnids), tuple(words))


# ---------------------------------------------------------------------------------------------- writing files

def _write_all(files: dict[Path, str], force: bool = False) -> list[Path]:
    """Write every file whose content changes; refuse (before writing any) to replace different content."""
    changed = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    clashes = [p for p in changed if p.exists()]
    if clashes and not force:
        raise TransferError(f"{clashes[0]} already exists with different content"
                            f"{f' (and {len(clashes) - 1} more)' if len(clashes) > 1 else ''}; "
                            "remove it (or pass --force) to regenerate")
    for p in changed:
        atomic_write(p, files[p])
    return changed


def _class_list(out: Path, synsets: str | os.PathLike | None, files: dict[Path, str]) -> tuple[list, list]:
    """(wnids, words) of the split directory: copied in from `synsets` (and its synset_words.txt)
    when given, else read from the directory; ([], []) when it has none."""
    if synsets is not None:
        src = Path(synsets)
        if not src.is_file():
            raise TransferError(f"{src}: no such synsets file")
        files[out / "synsets.txt"] = src.read_text()
        if (src.parent / "synset_words.txt").is_file():
            files[out / "synset_words.txt"] = (src.parent / "synset_words.txt").read_text()
        return _read_synsets(src)
    if (out / "synsets.txt").is_file():
        return _read_synsets(out / "synsets.txt")
    return [], []


def make_splits(out: str | os.PathLike | None = None, num_classes: int | None = None,
                synsets: str | os.PathLike | None = None, wordnet_dir: str | os.PathLike | None = None,
                force: bool = False) -> list[Path]:
    """(Re)generate a split directory; returns the files that changed.

    `synsets` (and the synset_words.txt beside it) are copied in first. The random halves are written for
    num_classes classes (default: the directory's synsets.txt); manmade/natural come from WordNet only for a
    1000-class set (ILSVRC2012): a smaller set (the synthetic one) brings its own."""
    out = Path(out) if out is not None else SPLIT_DIR
    files: dict[Path, str] = {}
    wnids, words = _class_list(out, synsets, files)
    if num_classes is None and not wnids:
        raise TransferError(f"{out} has no synsets.txt: pass --synsets FILE or --num-classes N")
    if num_classes is None:
        num_classes = len(wnids)
    if wnids and num_classes != len(wnids):
        raise TransferError(f"--num-classes {num_classes}, but the synsets list has {len(wnids)} classes")
    if num_classes < 2:
        raise TransferError(f"cannot halve {num_classes} classes")

    for seed in HALF_SEEDS:
        a, b = random_half(seed, num_classes)
        files[out / f"half{seed}A.txt"] = format_indices(a)
        files[out / f"half{seed}B.txt"] = format_indices(b)
    if num_classes == 1000 and wnids:
        manmade, natural = wordnet.natman_split(wordnet.load_nouns(wordnet_dir), wnids, words)
        files[out / "manmade.txt"] = format_indices(manmade)
        files[out / "natural.txt"] = format_indices(natural)
    return _write_all(files, force)


# ---------------------------------------------------------------------------------------------- file lists

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


def _list_files(name: str, split: SplitSet, whole_list: Path, paths: list[str], labels: list[int],
                counts: list[int]) -> dict[str, str]:
    """{'files.txt': ..., 'idxmap.txt': ...} of one derived list (reduced lists have no idxmap, as released)."""
    from . import budgets  # imports this module
    if budgets.is_budget_name(name):
        # A budget's "fewer classes" keep 1000 images a class (the paper's), or all of a smaller dataset's.
        return budgets.budget_lists(name, paths, labels, split.num_classes,
                                    class_images=min(budgets.BUDGET_CLASS_IMAGES, max(counts)))
    m = REDUCED_RE.fullmatch(name)
    if m:
        keep, classes = int(m.group(1)), list(range(split.num_classes))
    else:
        classes = split.classes(name)
    empty = [i for i in classes if counts[i] == 0]
    if empty:
        raise TransferError(f"{whole_list}: class {empty[0]} ({split.describe(empty[0])}) of {name} has no images"
                            f"{f' (nor have {len(empty) - 1} more)' if len(empty) > 1 else ''}")
    if m:
        # Reduced sets keep all classes and labels: the first `keep` lines of each class, in list order.
        seen = [0] * split.num_classes
        out = []
        for p, label in zip(paths, labels):
            if seen[label] < keep:
                seen[label] += 1
                out.append(f"{p} {label}\n")
        return {"files.txt": "".join(out)}
    new = {orig: i for i, orig in enumerate(classes)}   # increasing original index -> 0..N-1
    files = "".join(f"{p} {new[label]}\n" for p, label in zip(paths, labels) if label in new)
    idxmap = IDXMAP_HEADER + "".join(f"{orig} {i}\n" for orig, i in new.items())
    return {"files.txt": files, "idxmap.txt": idxmap}


def check_list_name(name: str) -> None:
    m = REDUCED_RE.fullmatch(name)
    if m and int(m.group(1)) == 0:
        raise TransferError("reduced0000 would be empty")
    if not m and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise TransferError(f"bad list name {name!r}")


def write_lists(whole_list: Path, out: Path, names: list[str] | tuple[str, ...] = DEFAULT_LISTS,
                split_dir: Path | None = None) -> None:
    """Write out/NAME/files.txt (and idxmap.txt) for each NAME, cut from the whole list.

    NAME is a class list of the split directory (half0A..half3B, manmade, natural), reducedNNNN (4 digits) or a
    data budget of transfer/data/budgets.py (imagesNNNN, budgetNk-images, budgetNk-classes).
    Existing identical files are left alone; different ones are an error, never overwritten. If the whole list
    is one the released code used, every files.txt is checked against the released md5."""
    whole_list, out = Path(whole_list), Path(out)
    split = load_split_dir(split_dir)
    for name in names:
        check_list_name(name)
    paths, labels = read_whole_list(whole_list, split.num_classes)
    counts = [0] * split.num_classes
    for label in labels:
        counts[label] += 1
    # Every list is built and compared before anything is written: a clash leaves `out` untouched.
    files: dict[Path, str] = {}
    for name in names:
        for fname, text in _list_files(name, split, whole_list, paths, labels, counts).items():
            files[out / name / fname] = text
    _write_all(files)
    released = RELEASED_MD5.get(file_md5(whole_list), {})
    for name in names:
        if name in released and file_md5(out / name / "files.txt") != released[name]:
            raise TransferError(f"{out / name / 'files.txt'}: md5 differs from the released list's "
                                f"{released[name]} although {whole_list} is the released whole list")


def file_md5(path: Path) -> str:
    return digest(path, "md5")


# ---------------------------------------------------------------------------------------------- command line

def _cmd_make(args: argparse.Namespace) -> int:
    changed = make_splits(args.out, args.num_classes, args.synsets, args.wordnet, args.force)
    for p in changed:
        print(f"wrote {p}")
    print(f"{args.out or SPLIT_DIR}: {'up to date' if not changed else f'{len(changed)} files written'}")
    return 0


def _print_list(split: SplitSet, name: str, classes: list[int]) -> None:
    print(f"# {name}: {len(classes)} classes (index wnid name)")
    for i in classes:
        print(f"{i} {split.describe(i)}")


def _cmd_show(args: argparse.Namespace) -> int:
    split = load_split_dir(args.splits)
    if args.name is None:
        print(f"{split.path}: {split.num_classes} classes")
        for name in split.names():
            print(f"{name}: {len(split.classes(name))} classes")
    elif args.name in PAIRS:
        for name, classes in zip(PAIRS[args.name], split.pair(args.name)):
            _print_list(split, name, classes)
    else:
        _print_list(split, args.name, split.classes(args.name))
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    split = load_split_dir(args.splits)
    print("n_i  x_i")
    for n, wnid, words in wordnet.largest_counts(wordnet.load_nouns(args.wordnet), list(split.wnids), args.top):
        print(f"{n:<4} {wnid}: {words}")
    return 0


def _cmd_write_lists(args: argparse.Namespace) -> int:
    names = [n for n in args.only.split(",") if n] if args.only else list(DEFAULT_LISTS)
    write_lists(Path(args.whole_list), Path(args.out), names, args.splits)
    released = RELEASED_MD5.get(file_md5(Path(args.whole_list)), {})
    for name in names:
        digest = file_md5(Path(args.out) / name / "files.txt")
        print(f"{digest}  {Path(args.out) / name / 'files.txt'}{'  (= released)' if name in released else ''}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("splits", help="class splits (random halves, man-made/natural) and file lists")
    sub = p.add_subparsers(dest="splits_command", metavar="SUBCOMMAND")
    sub.required = True

    m = sub.add_parser("make", help="regenerate a split directory (default: the repo's splits/)")
    m.add_argument("--out", type=Path, help="split directory to write (default: splits/ of the repo)")
    m.add_argument("--num-classes", type=int, help="number of classes (default: lines of synsets.txt)")
    m.add_argument("--synsets", type=Path, help="synsets.txt to copy in (with the synset_words.txt beside it)")
    m.add_argument("--wordnet", type=Path, help="WordNet 3.0 dict directory (default: $WNSEARCHDIR or Debian's)")
    m.add_argument("--force", action="store_true", help="replace lists whose content differs")
    m.set_defaults(func=_cmd_make)

    s = sub.add_parser("show", help="print a class list with names: half0..half3, natman, or a list name")
    s.add_argument("name", nargs="?", help="half0..half3, natman, or a list (half0A, manmade, ...); none: summary")
    s.add_argument("--splits", type=Path, help="split directory (default: splits/ of the repo)")
    s.set_defaults(func=_cmd_show)

    t = sub.add_parser("table", help="the WordNet synsets with most classes below them (supplementary C)")
    t.add_argument("--top", type=argtypes.whole(1), default=20, help="how many synsets to list (default 20)")
    t.add_argument("--splits", type=Path, help="split directory (default: splits/ of the repo)")
    t.add_argument("--wordnet", type=Path, help="WordNet 3.0 dict directory")
    t.set_defaults(func=_cmd_table)

    w = sub.add_parser("write-lists", help="cut a whole-dataset Caffe list into OUT/NAME/files.txt + idxmap.txt")
    w.add_argument("--whole-list", required=True, help="Caffe list of the whole set: 'path label' a line")
    w.add_argument("--out", required=True, help="directory to hold NAME/files.txt")
    w.add_argument("--only", help="comma-separated NAMEs: half0A..half3B, manmade, natural, reduced0001..reduced1300,"
                                  " images0050..images0500, budget500k-images, budget500k-classes, ..."
                                  " (default: the eight halves, manmade and natural)")
    w.add_argument("--splits", type=Path, help="split directory (default: splits/ of the repo)")
    w.set_defaults(func=_cmd_write_lists)
