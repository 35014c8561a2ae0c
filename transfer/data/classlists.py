"""Class splits: which classes each class list holds, in a split directory.

A split directory holds `synsets.txt` (class index -> wnid; `synset_words.txt` with names, optional) and one
`<name>.txt` per class list: class indices, one a line, ascending. The repo's `splits/` is the paper's (the
released random halves and the man-made/natural split); the synthetic dataset writes its own.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import REPO
from . import wordnet
from ..core.errors import TransferError
from ..core.files import atomic_write

SPLIT_DIR = REPO / "splits"
HALF_SEEDS = (0, 1, 2, 3)
HALF_NAMES = tuple(f"half{s}{ab}" for s in HALF_SEEDS for ab in "AB")
NATMAN_NAMES = ("manmade", "natural")
DEFAULT_LISTS = HALF_NAMES + NATMAN_NAMES
PAIRS = {**{f"half{s}": (f"half{s}A", f"half{s}B") for s in HALF_SEEDS}, "natman": NATMAN_NAMES}
NOT_LISTS = {"synsets", "synset_words", "README"}
LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")   # a file name in the split directory, never a path


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
        if not LIST_NAME.fullmatch(name):
            raise TransferError(f"bad list name {name!r} (letters, digits, '.', '_' and '-'; a file of {self.path})")
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

def write_all(files: dict[Path, str], force: bool = False) -> list[Path]:
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

    files.update(half_files(out, HALF_SEEDS, num_classes))
    if num_classes == 1000 and wnids:
        manmade, natural = wordnet.natman_split(wordnet.load_nouns(wordnet_dir), wnids, words)
        files[out / "manmade.txt"] = format_indices(manmade)
        files[out / "natural.txt"] = format_indices(natural)
    return write_all(files, force)


def half_files(out: Path, seeds: tuple[int, ...] | list[int], num_classes: int) -> dict[Path, str]:
    """The class lists of the random halves drawn with these seeds, as the released script drew them."""
    files = {}
    for seed in seeds:
        a, b = random_half(seed, num_classes)
        files[out / f"half{seed}A.txt"] = format_indices(a)
        files[out / f"half{seed}B.txt"] = format_indices(b)
    return files


def write_halves(out: Path, seeds: list[int]) -> list[Path]:
    """Add the random halves of further seeds (a plan's replicates) to a split directory; lists already
    there must be the ones these seeds draw."""
    return write_all(half_files(out, seeds, load_split_dir(out).num_classes))

