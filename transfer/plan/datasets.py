"""A plan's data sets as typed objects: what each holds, what it is cut from, where its files are.

The family that uses a data set says what kind it is (transfer/plan/families.py); preparing the data
(transfer/data/prepare.py), cutting its file lists (transfer/data/filelists.py) and reading the results
(transfer/results/) dispatch on `DatasetSpec.kind`, never on the data set's name.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

WHOLE = "all"   # the data set of every class and image: built from the images, every other one derives from it


class Kind(enum.Enum):
    """How a data set is made from the whole set (or from the user's images)."""

    WHOLE = "whole"                 # every class, every image: built from the images
    CLASSES = "classes"             # the classes of a class list (half0A, manmade), relabelled 0..K-1
    REDUCED = "reduced"             # every class, its first `per_class` images (the paper's Table S1)
    SAMPLE = "sample"               # every class, a seeded random `per_class` of its images (Huh's budgets)
    CLASS_BUDGET = "class_budget"   # `classes` seeded random classes x images // classes each, relabelled
    LABELSET = "labelset"           # every image, its class grouped into a coarser label (Huh's label sets)
    TARGET = "target"               # the user's own images (a plan's `targets`)


# Data sets whose nets are validated on the whole set (they keep every class and label, fewer images).
VALIDATED_ON_WHOLE = (Kind.REDUCED, Kind.SAMPLE)


@dataclass(frozen=True)
class DatasetFiles:
    """One data set's files under the plan's data directory: <data>/<name>/{train_lmdb,val_lmdb,mean}."""

    train: Path
    val: Path
    mean: Path
    labels: Path     # a view's label map ("old new" lines): the set is read through another set's LMDBs

    @staticmethod
    def under(data_dir: Path, name: str) -> DatasetFiles:
        d = data_dir / name
        return DatasetFiles(train=d / "train_lmdb", val=d / "val_lmdb", mean=d / "mean.binaryproto",
                            labels=d / "labels.txt")


@dataclass(frozen=True)
class DatasetSpec:
    """One data set of a plan.

    classes: the labels a net trained on it needs (None for a whole set the plan does not declare: as many
    as the split directory lists). parent: the set it is cut from or read through. per_class: images kept
    per class (REDUCED, SAMPLE, CLASS_BUDGET). images: the image budget it was declared with (SAMPLE given
    as a budget, CLASS_BUDGET). class_list: the split directory's list of its classes (CLASSES), which a
    random half (`half`) can write where it is missing. view: a LABELSET read through the parent's
    databases with a label map instead of a relabelled copy."""

    name: str
    kind: Kind
    classes: int | None
    parent: str | None = None
    per_class: int | None = None
    images: int | None = None
    class_list: str | None = None
    half: tuple[int, str] | None = None   # CLASSES: the random split (seed, "A" | "B") its list is drawn from
    view: bool = False

    @property
    def cut_from_list(self) -> bool:
        """Made by cutting the whole set's file list (then deriving its databases from the whole set's)."""
        return self.kind in (Kind.CLASSES, Kind.REDUCED, Kind.SAMPLE, Kind.CLASS_BUDGET)

    @property
    def validated_on_whole(self) -> bool:
        """Its nets test on the whole validation set: it keeps every class and label, only fewer images."""
        return self.kind in VALIDATED_ON_WHOLE

    def describe(self) -> str:
        """One line for logs and `plan show`: the kind and its numbers."""
        what = {
            Kind.WHOLE: "every class and image",
            Kind.CLASSES: f"the classes of list {self.class_list}",
            Kind.REDUCED: f"the first {self.per_class} images of every class",
            Kind.SAMPLE: f"a random {self.per_class} images of every class",
            Kind.CLASS_BUDGET: f"{self.images:,} images as {self.classes} random classes" if self.images else "",
            Kind.LABELSET: "every image, classes grouped into coarser labels" + (" (a view)" if self.view else ""),
            Kind.TARGET: "the user's images",
        }[self.kind]
        labels = f"{self.classes} labels" if self.classes is not None else "labels of the split directory"
        return f"{self.name}: {self.kind.value}, {what}; {labels}"


def reduced_name(per_class: int) -> str:
    """The released name of a reduced set (reduced0100), as the paper's plan and file lists spell it."""
    return f"reduced{per_class:04d}"


def sample_name(per_class: int) -> str:
    return f"images{per_class:04d}"


def class_budget_name(images: int) -> str:
    return f"budget{images // 1000}k-classes" if images % 1000 == 0 else f"budget{images}-classes"


# Data sets named on a command line (`transfer splits write-lists`), cut from the whole set.

def class_list_set(name: str) -> DatasetSpec:
    return DatasetSpec(name, Kind.CLASSES, None, parent=WHOLE, class_list=name)


def reduced_set(per_class: int) -> DatasetSpec:
    return DatasetSpec(reduced_name(per_class), Kind.REDUCED, None, parent=WHOLE, per_class=per_class)


def sample_set(per_class: int) -> DatasetSpec:
    return DatasetSpec(sample_name(per_class), Kind.SAMPLE, None, parent=WHOLE, per_class=per_class)


def class_budget_set(images: int, classes: int) -> DatasetSpec:
    return DatasetSpec(class_budget_name(images), Kind.CLASS_BUDGET, classes, parent=WHOLE,
                       per_class=images // classes, images=images)
