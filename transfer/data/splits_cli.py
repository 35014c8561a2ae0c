"""`transfer splits`: make and show class splits, and cut a whole list into the file lists of data sets."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import wordnet
from ..core import argtypes
from ..core.errors import TransferError
from ..plan.datasets import DatasetSpec, class_budget_set, class_list_set, reduced_set, sample_set
from .classlists import DEFAULT_LISTS, LIST_NAME, PAIRS, SPLIT_DIR, SplitSet, load_split_dir, make_splits
from . import filelists
from .filelists import file_md5, write_lists

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


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated positive integers") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated positive integers")
    return values


def _class_budgets(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        images, _, classes = item.partition(":")
        if not (images.isdigit() and classes.isdigit() and 0 < int(classes) <= int(images)):
            raise argparse.ArgumentTypeError(f"{item!r}: expected IMAGES:CLASSES, e.g. 500000:500")
        out.append((int(images), int(classes)))
    return out


def _wanted(args: argparse.Namespace) -> list[DatasetSpec]:
    """The data sets the options ask for (the paper's halves and man-made/natural lists when none)."""
    cut = bool(args.reduced or args.per_class or args.class_budget)
    names = [n for n in args.only.split(",") if n] if args.only else ([] if cut else list(DEFAULT_LISTS))
    for name in names:
        if not LIST_NAME.fullmatch(name):
            raise TransferError(f"bad list name {name!r}")
    return ([class_list_set(n) for n in names] + [reduced_set(c) for c in args.reduced or []]
            + [sample_set(c) for c in args.per_class or []]
            + [class_budget_set(i, c) for i, c in args.class_budget or []])


def _cmd_write_lists(args: argparse.Namespace) -> int:
    specs = _wanted(args)
    write_lists(Path(args.whole_list), Path(args.out), specs, args.splits)
    released = filelists.RELEASED_MD5.get(file_md5(Path(args.whole_list)), {})
    for spec in specs:
        digest = file_md5(Path(args.out) / spec.name / "files.txt")
        print(f"{digest}  {Path(args.out) / spec.name / 'files.txt'}"
              f"{'  (= released)' if spec.name in released else ''}")
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
    w.add_argument("--only", help="comma-separated class lists of the split directory (half0A..half3B, manmade, "
                                  "natural); default, when no other set is asked for: those ten")
    w.add_argument("--reduced", type=_positive_ints, metavar="N,...",
                   help="reducedNNNN sets: every class, its first N images (the paper's Table S1: 1300,...,1)")
    w.add_argument("--per-class", type=_positive_ints, metavar="N,...",
                   help="imagesNNNN sets: every class, a seeded random N of its images (Huh et al.)")
    w.add_argument("--class-budget", type=_class_budgets, metavar="IMAGES:CLASSES,...",
                   help="budget sets: CLASSES seeded random classes, IMAGES/CLASSES images each (Huh et al.)")
    w.add_argument("--splits", type=Path, help="split directory (default: splits/ of the repo)")
    w.set_defaults(func=_cmd_write_lists)
