"""The experiment families: each reads its YAML block (experiments.<family>) and declares its data sets
(with their kind) and nets. A new family is one function here, one entry in FAMILIES and one YAML block.
"""
from __future__ import annotations

import fnmatch
from typing import Callable

from ..core.errors import TransferError
from .builder import Builder, base_name
from .datasets import WHOLE, DatasetSpec, Kind, reduced_name
from .spec import Block, TargetSpec, check_name, read_target


def _ns(blk: Block) -> list[int]:
    ns = blk.sequence("n")
    for n in ns:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 7:
            raise TransferError(f"{blk.path}: {blk.where}: field 'n' has {n!r}; n must be an integer in 1..7")
    return ns


def _splits(blk: Block) -> list[int]:
    splits = blk.sequence("splits")
    for s in splits:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise TransferError(f"{blk.path}: {blk.where}: split {s!r} must be a seed, a non-negative integer")
    return splits


def _groups(blk: Block) -> list[tuple[Block, bool]]:
    """The `frozen` and `finetuned` groups of a transfer family, with whether they fine-tune."""
    return [(blk.block(kind), ft) for kind, ft in (("frozen", False), ("finetuned", True))
            if blk.has(kind) and blk.raw(kind)]


def _whole(b: Builder, blk: Block, key: str) -> str:
    """A family's data set that must be the whole set (`all`)."""
    name = blk.name(key, default=WHOLE)
    if name != WHOLE:
        raise blk.fail(key, f"{name!r}: this family trains on the whole set, which every plan calls '{WHOLE}'")
    return name


# ------------------------------------------------------------------------------ Yosinski et al. 2014

def split_replicates(seeds: list[int], replicates: int) -> dict[int, list[int]]:
    """Each listed split seed and the further splits that replicate it: with K replicates, seed s
    also draws s + j * (max seed + 1) for j = 1..K-1 (splits [0] and 3 replicates: 0, 1, 2)."""
    step = max(seeds) + 1
    return {s: [s + j * step for j in range(replicates)] for s in seeds}


def _half(b: Builder, seed: int, side: str) -> str:
    """A random half's data set: half the whole set's classes (as declared where the plan gives no whole
    count: the split directory then decides, at `prepare`)."""
    whole = b.datasets[WHOLE].classes
    name = f"half{seed}{side}"
    classes = None if whole is None else whole // 2 if side == "A" else whole - whole // 2
    b.dataset(DatasetSpec(name, Kind.CLASSES, classes, parent=WHOLE, class_list=name, half=(seed, side)),
              "experiments.random_split")
    return name


def _random_split(b: Builder, blk: Block) -> None:
    """Bases on both halves of each random split; AnB / BnB (frozen and fine-tuned) for each n. A plan's
    `replicates` draw more splits (each with its bases), as the paper's four splits are its replicates."""
    blk.check_keys(("splits", "n", "frozen", "finetuned"))
    ns = _ns(blk)
    listed = _splits(blk)
    groups = [(grp, ft, _splits(grp)) for grp, ft in _groups(blk)]
    seeds = split_replicates(sorted(set(listed) | {s for *_, ss in groups for s in ss}), b.replicates)
    for s in listed:
        for r, seed in enumerate(seeds[s]):
            for side in "AB":
                ds = _half(b, seed, side)
                b.add_base(ds, "random_split", str(seed), ds if r == 0 else None, replicate=r,
                           group=f"base-half*{side}")
    for grp, ft, splits in groups:
        grp.check_keys(("splits", "directions"))
        for s in splits:
            for d in grp.sequence("directions"):
                if d not in ("AA", "AB", "BA", "BB"):
                    raise TransferError(f"{grp.path}: {grp.where}: direction {d!r} must be one of "
                                        f"AA, AB, BA, BB")
                for r, seed in enumerate(seeds[s]):
                    src, tgt = _half(b, seed, d[0]), _half(b, seed, d[1])
                    for n in ns:
                        rel = f"transfer{'-ft' if ft else ''}{seed}{d[0]}{seed}{d[1]}_1_{n}"
                        group = f"half*{d[0]}-{n}-half*{d[1]}" + ("-ft" if ft else "")
                        b.add_copy(src, tgt, n, ft, "random_split", str(seed), rel if r == 0 else None,
                                   replicate=r, group=group)


def _natman_letter(dataset: str) -> str:
    # The released code called the natural half "A" and the man-made half "B".
    return {"natural": "A", "manmade": "B"}[dataset]


def _natman(b: Builder, blk: Block) -> None:
    """Man-made and natural bases, and transfer between them for each n."""
    blk.check_keys(("n", "frozen", "finetuned"))
    ns = _ns(blk)
    for ds in ("manmade", "natural"):
        b.dataset(DatasetSpec(ds, Kind.CLASSES, None, parent=WHOLE, class_list=ds), "experiments.natman")
        b.add_base(ds, "natman", "natman", f"halfnatman{_natman_letter(ds)}")
    for grp, ft in _groups(blk):
        grp.check_keys(("directions",))
        for pair in grp.sequence("directions"):
            if not (isinstance(pair, list) and len(pair) == 2 and set(pair) <= {"manmade", "natural"}):
                raise TransferError(f"{grp.path}: {grp.where}: direction {pair!r} must be a pair of "
                                    f"manmade and natural, e.g. [natural, manmade]")
            src, tgt = pair
            for n in ns:
                rel = f"transfer{'-ft' if ft else ''}natman{_natman_letter(src)}{_natman_letter(tgt)}_1_{n}"
                b.add_copy(src, tgt, n, ft, "natman", "natman", rel)


def _whole_family(b: Builder, blk: Block) -> None:
    """The base net on every class ("netbase"). `schedule`: a small plan's whole set, twice a half's images,
    reaches its plateau later than the halves (docs/small-scale.md); the paper's uses the default."""
    blk.check_keys(("dataset", "schedule"))
    ds = _whole(b, blk, "dataset")
    b.add(name=base_name(ds), treatment="base", family="whole", target=ds, released_name="netbase",
          schedule=blk.name("schedule", default="default"))


def _random_weights(b: Builder, blk: Block) -> None:
    """Layers 1..n left at their random initial weights and frozen ("nolearn"); `schedule` as `whole`'s."""
    blk.check_keys(("dataset", "n", "schedule"))
    ds = _whole(b, blk, "dataset")
    schedule = blk.name("schedule", default="default")
    for n in _ns(blk):
        b.add(name=f"random-{n}", treatment="random_weights", family="random_weights", target=ds,
              n=n, frozen=n, released_name=f"nolearn_1_{n}", schedule=schedule)


def _reduced(b: Builder, blk: Block) -> None:
    """The whole-set base net on the first `count` training images of each class."""
    blk.check_keys(("counts", "val_dataset", "schedule"))
    val = _whole(b, blk, "val_dataset")
    schedule = blk.name("schedule", default="default")
    for count in blk.sequence("counts"):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise TransferError(f"{blk.path}: {blk.where}: count {count!r} must be a positive integer")
        ds = reduced_name(count)
        b.dataset(DatasetSpec(ds, Kind.REDUCED, b.classes_of(val, ds), parent=WHOLE, per_class=count),
                  "experiments.reduced.counts")
        b.add(name=f"reduced-{count:04d}", treatment="reduced", family="reduced", target=ds,
              schedule=schedule, val_dataset=val, released_name=f"reduced-{count:04d}")


# ------------------------------------------------------------------------------ Huh et al. 2016

HUH_KEYS = ("original", "label_sets", "budgets", "schedule", "readout", "views", "coarse", "section51")
BUDGET_KEYS = ("per_class", "images", "classes")


def _budget(b: Builder, blk: Block, name: str, original: str) -> DatasetSpec:
    """One data budget (`budgets.<name>`): `per_class: N` (every class, N random images each), `images: N`
    (every class, N / classes each) or `images: N, classes: K` (K random classes, N / K images each)."""
    bb = blk.block(name)
    bb.check_keys(BUDGET_KEYS)
    where = f"{bb.where}"
    whole = b.classes_of(original, where)
    if bb.has("per_class"):
        if bb.has("images") or bb.has("classes"):
            raise bb.fail("per_class", "give either per_class, or images (with classes for fewer classes)")
        return DatasetSpec(name, Kind.SAMPLE, whole, parent=original, per_class=bb.integer("per_class", lo=1))
    images = bb.integer("images", lo=1)
    if not bb.has("classes"):
        if images < whole:
            raise bb.fail("images", f"{images} images are fewer than one per class of {whole}")
        return DatasetSpec(name, Kind.SAMPLE, whole, parent=original, per_class=images // whole, images=images)
    classes = bb.integer("classes", lo=1, hi=whole)
    if images < classes:
        raise bb.fail("images", f"{images} images are fewer than one per class of {classes}")
    return DatasetSpec(name, Kind.CLASS_BUDGET, classes, parent=original, per_class=images // classes,
                       images=images)


def _huh2016(b: Builder, blk: Block) -> None:
    """Huh et al. 2016: a base net per label set and data budget (and the original set), each read out
    on the original set (layers 1-7 copied and frozen, a new fc8)."""
    blk.check_keys(HUH_KEYS)
    original = _whole(b, blk, "original")
    schedule = blk.name("schedule", default="default")
    views = blk.boolean("views", default=False)
    names = [original]
    for ds in blk.sequence("label_sets") if blk.has("label_sets") else []:
        check_name(blk, "label_sets", ds)
        # read through the original set's LMDBs by the Data layer (label_map_file) when `views`
        b.dataset(DatasetSpec(ds, Kind.LABELSET, None, parent=original, view=views), f"{blk.where}.label_sets")
        names.append(ds)
    budgets = blk.block("budgets", required=False)
    for ds in budgets.keys(safe=True):
        b.dataset(_budget(b, budgets, ds, original), f"{budgets.where}.{ds}")
        names.append(ds)
    for key in ("coarse", "section51"):   # the sets the published rows compare with (report)
        if blk.has(key) and blk.name(key) not in names:
            raise blk.fail(key, f"{blk.raw(key)!r} is not one of this family's sets ({', '.join(names)})")
    for ds in names:
        val = original if b.datasets[ds].validated_on_whole else ds
        if base_name(ds) not in {n.name for n in b.nets}:
            b.add(name=base_name(ds), treatment="base", family="huh2016", target=ds, val_dataset=val,
                  schedule=schedule)
    if blk.has("readout"):
        ro = blk.block("readout")
        ro.check_keys(("dataset", "schedule"))
        on = ro.name("dataset", default=original)
        for ds in names:
            if ds != on:
                b.add(name=f"readout-{ds}", treatment="readout", family="huh2016", target=on, n=7,
                      base=base_name(ds), source=ds, frozen=7, copied=7, mean_dataset=ds,
                      schedule=ro.name("schedule", default="default"))


def huh_compare(blk: Block) -> dict[str, str]:
    """The Huh family's `coarse` and `section51` choices (which set each published row compares with)."""
    return {k: blk.name(k) for k in ("coarse", "section51") if blk.has(k)}


def targets(b: Builder, blk: Block) -> list[TargetSpec]:
    """Transfer to each user dataset (`targets`): from every chosen net, a new fc8 and every layer fine-tuned."""
    specs = []
    for tname in blk.keys(safe=True):
        spec = read_target(blk.block(tname), tname)
        b.dataset(DatasetSpec(tname, Kind.TARGET, spec.classes), f"targets.{tname}")
        sources = [n for n in b.nets if n.treatment in ("base", "reduced")] if not spec.bases else \
            [n for n in b.nets if any(fnmatch.fnmatchcase(n.name, p) for p in spec.bases)]
        if not sources:
            raise TransferError(f"{b.path}: targets.{tname}.from: {list(spec.bases) or 'every base net'} "
                                f"matches no net of the plan")
        for src in sources:
            b.add(name=f"ft-{tname}-{src.name}", treatment="target_ft", family="target", target=tname, n=7,
                  base=src.name, source=src.target, copied=7, frozen=0, mean_dataset=src.mean_dataset,
                  schedule=spec.schedule, replicate=src.replicate, group=f"ft-{tname}-{src.group}")
        if spec.scratch:
            b.add(name=f"scratch-{tname}", treatment="scratch", family="target", target=tname,
                  schedule=spec.scratch)
        specs.append(spec)
    return specs


FAMILIES: dict[str, Callable[[Builder, Block], None]] = {
    "huh2016": _huh2016,
    "random_split": _random_split,
    "natman": _natman,
    "whole": _whole_family,
    "random_weights": _random_weights,
    "reduced": _reduced,
}
