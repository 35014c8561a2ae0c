"""Data budgets of Huh et al. (2016) on Caffe file lists: fewer images per class, or fewer classes.

    Kind.SAMPLE         every class, a seeded random `per_class` of its images (labels unchanged)
    Kind.CLASS_BUDGET   `classes` seeded random classes, `per_class` random images each, relabelled 0..K-1

Samples are nested: a class's images are one seeded permutation of its lines, and a set keeps a prefix of it, so
images0050 is inside images0125, and so on; the random classes likewise (budget125k's inside budget250k's). Kept
lines stay in the whole list's order. Unlike the reduced sets of the first paper, which keep each class's first N
lines, these samples are random, as the paper's were.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import TransferError
from ..plan.datasets import DatasetSpec, Kind


def class_lines(labels: list[int], num_classes: int) -> list[list[int]]:
    """For every class, the indices of its lines, in list order."""
    out: list[list[int]] = [[] for _ in range(num_classes)]
    for i, label in enumerate(labels):
        out[label].append(i)
    return out


def sample_lines(labels: list[int], num_classes: int, per_class: int, seed: int = 0,
                 classes: list[int] | None = None) -> list[int]:
    """Indices (ascending) of a seeded random `per_class` lines of each class (all of a smaller class)."""
    if per_class < 1:
        raise TransferError(f"images per class must be at least 1, got {per_class}")
    by_class = class_lines(labels, num_classes)
    keep: list[int] = []
    for c in (range(num_classes) if classes is None else classes):
        lines = by_class[c]
        order = np.random.default_rng([seed, c]).permutation(len(lines))
        keep.extend(lines[i] for i in order[:per_class])
    return sorted(keep)


def random_classes(num_classes: int, count: int, seed: int = 0) -> list[int]:
    """`count` seeded random classes, ascending; a smaller count takes a subset of a larger one's."""
    if not 1 <= count <= num_classes:
        raise TransferError(f"cannot pick {count} of {num_classes} classes")
    return sorted(int(c) for c in np.random.RandomState([seed]).permutation(num_classes)[:count])


def budget_lines(spec: DatasetSpec, labels: list[int], num_classes: int,
                 seed: int = 0) -> tuple[list[int], list[int] | None]:
    """(kept line indices, the kept classes in their new label order, or None where every class stays with
    its label) of a SAMPLE or CLASS_BUDGET set cut from a whole list of `num_classes` classes."""
    if spec.per_class is None:
        raise TransferError(f"{spec.name}: a budget needs its images per class")
    if spec.kind == Kind.SAMPLE:
        return sample_lines(labels, num_classes, spec.per_class, seed), None
    if spec.kind != Kind.CLASS_BUDGET or spec.classes is None:
        raise TransferError(f"{spec.describe()} is not a data budget")
    if spec.classes > num_classes:
        raise TransferError(f"{spec.name}: {spec.classes} classes of {spec.per_class} images, but the set has "
                            f"{num_classes}")
    classes = random_classes(num_classes, spec.classes, seed)
    return sample_lines(labels, num_classes, spec.per_class, seed, classes), classes
