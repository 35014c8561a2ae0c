"""Pre-training label sets of Huh, Agrawal and Efros (2016): coarser or fewer ILSVRC classes, from WordNet 3.0.

A label set maps every kept class to a group (a taxonomy node); each group is one label of the pre-training
net. The rules run on any `Hierarchy`: WordNet 3.0 for ILSVRC2012, the synthetic dataset's class tree for the
small plans.

- first parent: WordNet's "first hypernym", among a synset's `@` (not `@i`) hypernyms the one whose NLTK name
  (first lemma lowercased, `.n.`, two-digit sense number from index.noun) sorts first; depth counts from the
  root (`entity` = 0) along first parents.
- bottomup-K: cut every class's chain at depth D; deeper classes map to their ancestor at depth D, the others
  stay themselves. D = max depth - 1 .. 0 (WordNet: 17..0 give K = 999 .. 1).
- topdown-K: repeatedly replace every label by its first parent, then map each class to the topmost member of
  the new label set on its chain (WordNet: 127, 10, 2; the single label at the end is left out).
- <name>-removed: the classes under none of the hierarchy's excluded nodes (pascal-removed: 771 classes).
- minimal-A / minimal-B: the classes under the hierarchy's split node (`artifact`) and the rest;
  randomN-A / randomN-B: a seeded random split of the same sizes.
docs/huh2016.md sets these against the paper's wording.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..core.errors import TransferError
from . import synthetic, wordnet
from .classlists import SplitSet, load_split_dir

ENTITY = "n00001740"
ARTIFACT = "n00021939"
RANDOM_SEED = 0

# The 20 PASCAL VOC classes and the WordNet 3.0 synset each is taken to be: every ILSVRC2012 class under one of
# them is left out of "pascal-removed" (771 classes stay).
PASCAL_SYNSETS = (
    ("aeroplane", "n02691156"), ("bicycle", "n02834778"), ("bird", "n01503061"), ("boat", "n02858304"),
    ("bottle", "n02876657"), ("bus", "n02924116"), ("car", "n02958343"), ("cat", "n02121620"),
    ("chair", "n03001627"), ("cow", "n01887787"), ("diningtable", "n03201208"), ("dog", "n02084071"),
    ("horse", "n02374451"), ("motorbike", "n03769722"), ("person", "n00007846"), ("pottedplant", "n00017222"),
    ("sheep", "n02411705"), ("sofa", "n04256520"), ("train", "n04468005"), ("tvmonitor", "n03782006"),
)


class Hierarchy(Protocol):
    """What the rules need of a taxonomy of the classes."""
    root: str
    split_node: str                          # minimal-A holds the classes under it
    excluded: dict[str, tuple[str, ...]]     # label-set name -> nodes whose classes it leaves out

    def first_parent(self, node: str) -> str | None: ...
    def ancestors(self, node: str) -> set[str]: ...    # node and all above it, along every parent link
    def words(self, node: str) -> str: ...


class WordNetHierarchy:
    """WordNet 3.0 nouns (transfer/data/wordnet.py's reader) with NLTK's names ordering the hypernyms."""
    root = ENTITY
    split_node = ARTIFACT
    excluded = {"pascal-removed": tuple(w for _, w in PASCAL_SYNSETS)}

    def __init__(self, wordnet_dir: str | os.PathLike | None = None) -> None:
        self.graph = wordnet.load_nouns(wordnet_dir)
        self.names = wordnet.synset_names(self.graph, wordnet_dir)
        self._first: dict[str, str | None] = {}

    def first_parent(self, node: str) -> str | None:
        if node not in self._first:
            if node not in self.graph.words:
                raise TransferError(f"{node} is not a WordNet 3.0 noun synset")
            hyper = self.graph.hypernyms.get(node, ())
            self._first[node] = min(hyper, key=self.names.__getitem__) if hyper else None
        return self._first[node]

    def ancestors(self, node: str) -> set[str]:
        return wordnet.ancestors(self.graph, node)

    def words(self, node: str) -> str:
        return self.graph.words[node]

    def name(self, node: str) -> str:
        return self.names[node]


class TreeHierarchy:
    """A taxonomy given as a parent table (one parent a node): the synthetic dataset's class tree."""

    def __init__(self, parents: dict[str, str | None], words: dict[str, str], split_node: str,
                 excluded: dict[str, tuple[str, ...]] | None = None) -> None:
        roots = [n for n, p in parents.items() if p is None]
        if len(roots) != 1:
            raise TransferError(f"a class tree needs exactly one root, got {roots}")
        self.root = roots[0]
        self.parents, self._words, self.split_node = parents, words, split_node
        self.excluded = excluded or {}

    def first_parent(self, node: str) -> str | None:
        if node not in self.parents:
            raise TransferError(f"{node} is not a node of the class tree")
        return self.parents[node]

    def ancestors(self, node: str) -> set[str]:
        return set(chain(self, node))

    def words(self, node: str) -> str:
        return self._words.get(node, "")


@dataclass(frozen=True)
class Group:
    label: int
    wnid: str
    words: str
    members: tuple[str, ...]      # the classes it holds, in class-list order


@dataclass(frozen=True)
class LabelSet:
    name: str
    rule: str
    map: dict[str, str]           # kept class -> its group's node; dropped classes absent
    groups: tuple[Group, ...] = field(default=())

    @property
    def num_labels(self) -> int:
        return len(self.groups)

    def label_of(self) -> dict[str, int]:
        """kept class -> the label (0..K-1) of its group."""
        by_node = {g.wnid: g.label for g in self.groups}
        return {c: by_node[node] for c, node in self.map.items()}

    def to_json(self) -> dict:
        return {"name": self.name, "rule": self.rule, "num_labels": self.num_labels,
                "num_classes": len(self.map), "map": dict(self.map),
                "groups": [{"label": g.label, "wnid": g.wnid, "words": g.words, "count": len(g.members)}
                           for g in self.groups]}


def make_label_set(h: Hierarchy, classes: list[str], name: str, rule: str, mapping: dict[str, str]) -> LabelSet:
    """Number the groups by their first member in class-list order (so a subset keeps ascending order)."""
    members: dict[str, list[str]] = {}
    for c in classes:
        if c in mapping:
            members.setdefault(mapping[c], []).append(c)
    groups = tuple(Group(i, node, h.words(node), tuple(m)) for i, (node, m) in enumerate(members.items()))
    return LabelSet(name, rule, {c: mapping[c] for c in classes if c in mapping}, groups)


# ---------------------------------------------------------------------------------------------- the rules

def chain(h: Hierarchy, node: str) -> list[str]:
    """node, its first parent, that one's first parent, ... up to the root."""
    out = [node]
    while (parent := h.first_parent(out[-1])) is not None:
        if parent in out or len(out) > 1000:
            raise TransferError(f"the first parents of {node} loop at {parent}")
        out.append(parent)
    if out[-1] != h.root:
        raise TransferError(f"the first parents of {node} end at {out[-1]}, not at the root {h.root}")
    return out


def depths(h: Hierarchy, classes: list[str]) -> dict[str, int]:
    return {c: len(chain(h, c)) - 1 for c in classes}


def bottomup(h: Hierarchy, classes: list[str], depth: int) -> dict[str, str]:
    """Every class deeper than `depth` -> its first-parent ancestor at that depth; the others -> themselves."""
    out = {}
    for c in classes:
        top_down = chain(h, c)[::-1]
        out[c] = top_down[depth] if len(top_down) > depth + 1 else c
    return out


def topdown_sequence(h: Hierarchy, classes: list[str]) -> list[dict[str, str]]:
    """The top-down label sets, finest first, down to (and without) the single root label."""
    chains = {c: chain(h, c) for c in classes}
    labels = set(classes)
    out: list[dict[str, str]] = []
    while len(labels) > 1:
        parents = {h.first_parent(x) or x for x in labels}
        mapping = {c: next(x for x in reversed(chains[c]) if x in parents) for c in classes}
        labels = set(mapping.values())
        if len(labels) > 1:
            out.append(mapping)
    return out


def kept_outside(h: Hierarchy, classes: list[str], nodes: tuple[str, ...]) -> list[str]:
    """The classes under none of `nodes` (any parent link counts, as in the man-made/natural split)."""
    drop = set(nodes)
    return [c for c in classes if not h.ancestors(c) & drop]


def minimal_split(h: Hierarchy, classes: list[str]) -> tuple[list[str], list[str]]:
    """(classes under the split node, the rest)."""
    a = [c for c in classes if h.split_node in h.ancestors(c)]
    inside = set(a)
    return a, [c for c in classes if c not in inside]


def random_split(classes: list[str], size_a: int, seed: int = RANDOM_SEED) -> tuple[list[str], list[str]]:
    """A seeded random `size_a`-class A and the rest, both in class-list order (drawn as the random halves)."""
    rng = np.random.RandomState([seed])
    chosen = set(int(i) for i in rng.choice(np.arange(len(classes)), size_a, replace=False))
    return ([c for i, c in enumerate(classes) if i in chosen], [c for i, c in enumerate(classes) if i not in chosen])


def label_sets(h: Hierarchy, classes: list[str]) -> dict[str, LabelSet]:
    """Every label set of the hierarchy over `classes` (the dataset's class wnids, in label order)."""
    if len(set(classes)) != len(classes):
        raise TransferError("the class list repeats a class")
    out: dict[str, LabelSet] = {}

    def add(name: str, rule: str, mapping: dict[str, str]) -> None:
        if name not in out:     # two depths giving the same K: the deeper cut keeps the name
            out[name] = make_label_set(h, classes, name, rule, mapping)

    deepest = max(depths(h, classes).values())
    for d in range(deepest - 1, -1, -1):
        mapping = bottomup(h, classes, d)
        add(f"bottomup-{len(set(mapping.values()))}", f"bottom-up: first-parent chains cut at depth {d}", mapping)
    for step, mapping in enumerate(topdown_sequence(h, classes), 1):
        add(f"topdown-{len(set(mapping.values()))}", f"top-down: step {step} of first-parent replacement", mapping)
    for name, nodes in h.excluded.items():
        kept = kept_outside(h, classes, nodes)
        add(name, f"classes under none of {len(nodes)} nodes, each its own label", {c: c for c in kept})
    a, b = minimal_split(h, classes)
    add("minimal-A", f"classes under {h.split_node} ({h.words(h.split_node)})", {c: c for c in a})
    add("minimal-B", f"classes not under {h.split_node} ({h.words(h.split_node)})", {c: c for c in b})
    ra, rb = random_split(classes, len(a))
    add(f"random{len(a)}-A", f"seeded random {len(a)} classes (seed {RANDOM_SEED})", {c: c for c in ra})
    add(f"random{len(a)}-B", f"the other {len(rb)} classes of random{len(a)}-A", {c: c for c in rb})
    return out


def get_label_set(sets: dict[str, LabelSet], name: str) -> LabelSet:
    if name not in sets:
        raise TransferError(f"no label set '{name}' (have: {', '.join(sets)})")
    return sets[name]


def class_label_map(label_set: LabelSet, classes: list[str]) -> dict[int, int]:
    """Original label (index into `classes`) -> new label, for the kept classes: what a relabelled LMDB needs."""
    labels = label_set.label_of()
    return {i: labels[c] for i, c in enumerate(classes) if c in labels}


def hierarchy_for(split: SplitSet, wordnet_dir: str | os.PathLike | None = None) -> Hierarchy:
    """The synthetic dataset's class tree when the split directory is one, else WordNet 3.0."""
    if synthetic.is_synthetic(split.path):
        parents, words = synthetic.dataset_tree(split.path)
        missing = [c for c in split.wnids if c not in parents]
        if missing:
            raise TransferError(f"{split.path}: classes {missing[:5]} are not in the dataset's class tree")
        return TreeHierarchy(parents, words, split_node=synthetic.SUPERCLASSES[True])
    return WordNetHierarchy(wordnet_dir)


def load_label_sets(split_dir: str | os.PathLike | None = None,
                    wordnet_dir: str | os.PathLike | None = None) -> tuple[SplitSet, dict[str, LabelSet]]:
    """The split directory (default: the repo's ILSVRC2012 splits/) and every label set of its classes."""
    split = load_split_dir(split_dir)
    return split, label_sets(hierarchy_for(split, wordnet_dir), list(split.wnids))


# ---------------------------------------------------------------------------------------------- command line

def _cmd_list(args: argparse.Namespace) -> int:
    split, sets = load_label_sets(args.splits, args.wordnet)
    print(f"# {split.path}: {split.num_classes} classes")
    print(f"{'name':<16} {'labels':>6} {'classes':>7}  rule")
    for ls in sets.values():
        print(f"{ls.name:<16} {ls.num_labels:>6} {len(ls.map):>7}  {ls.rule}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    _, sets = load_label_sets(args.splits, args.wordnet)
    ls = get_label_set(sets, args.name)
    if args.json:
        print(json.dumps(ls.to_json(), indent=1))
        return 0
    print(f"# {ls.name}: {ls.num_labels} labels over {len(ls.map)} classes ({ls.rule})")
    print("# label wnid count words")
    for g in ls.groups:
        print(f"{g.label} {g.wnid} {len(g.members)} {g.words}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("labels", help="pre-training label sets from the class taxonomy (Huh et al. 2016)")
    sub = p.add_subparsers(dest="labels_command", metavar="SUBCOMMAND")
    sub.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--splits", type=Path, help="split directory (default: splits/ of the repo; a synthetic "
                                                   "dataset's directory uses its class tree)")
        q.add_argument("--wordnet", type=Path, help="WordNet 3.0 dict directory (default: $WNSEARCHDIR or Debian's)")

    ls = sub.add_parser("list", help="every label set: name, labels, kept classes, rule")
    common(ls)
    ls.set_defaults(func=_cmd_list)

    sh = sub.add_parser("show", help="one label set's groups; --json: the class -> group map and the groups")
    sh.add_argument("name", help="e.g. bottomup-486, topdown-127, pascal-removed, minimal-A, random522-B")
    sh.add_argument("--json", action="store_true", help='{"map": {class: group}, "groups": [...], ...}')
    common(sh)
    sh.set_defaults(func=_cmd_show)
