"""Data budgets of Huh et al. (2016) on Caffe file lists: fewer images per class, or a fixed number of images.

    imagesNNNN                 every class, a seeded random sample of NNNN of its images (labels unchanged)
    budgetNk-images            every class, N*1000 / num_classes images each (a seeded sample, labels unchanged)
    budgetNk-classes           N*1000 / 1000 seeded random classes, 1000 images each, relabelled 0..K-1

Samples are nested: a class's images are one seeded permutation of its lines, and a set keeps a prefix of it, so
images0050 is inside images0125, and so on; the random classes likewise (budget125k's inside budget250k's). Kept
lines stay in the whole list's order. Unlike the reduced sets of the first paper, which keep each class's first N
lines, these samples are random, as the paper's were.
"""
from __future__ import annotations

import re

import numpy as np

from ..core.errors import TransferError
from .splits import IDXMAP_HEADER

IMAGES_PER_CLASS = (50, 125, 250, 500)
BUDGETS = (500_000, 250_000, 125_000)
BUDGET_CLASS_IMAGES = 1000     # the paper's "more examples/class" rows: K classes x 1000 images
IMAGES_RE = re.compile(r"images(\d{4,})$")
BUDGET_RE = re.compile(r"budget(\d+)(k?)-(images|classes)$")


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


def budget_total(name: str) -> tuple[int, str] | None:
    """(images, 'images' | 'classes') of a budget list name ('budget500k-classes'), None for other names."""
    m = BUDGET_RE.fullmatch(name)
    if not m:
        return None
    return int(m.group(1)) * (1000 if m.group(2) else 1), m.group(3)


def is_budget_name(name: str) -> bool:
    return bool(IMAGES_RE.fullmatch(name)) or budget_total(name) is not None


def budget_lists(name: str, paths: list[str], labels: list[int], num_classes: int, seed: int = 0,
                 class_images: int = BUDGET_CLASS_IMAGES) -> dict[str, str]:
    """{'files.txt': ...} (and 'idxmap.txt' where classes are dropped) of the list `name` cut from a whole list.

    class_images: images a class of a budgetNk-classes set (the paper's 1000; a small dataset needs fewer)."""
    m = IMAGES_RE.fullmatch(name)
    if m:
        per_class, classes = int(m.group(1)), None
    else:
        parsed = budget_total(name)
        if parsed is None:
            raise TransferError(f"{name!r} is not a budget list name (imagesNNNN, budgetNk-images, budgetNk-classes)")
        total, way = parsed
        if way == "images":
            per_class, classes = total // num_classes, None
            if per_class < 1:
                raise TransferError(f"{name}: {total} images are fewer than one per class of {num_classes}")
        else:
            per_class = class_images
            count = -(-total // per_class)
            if count > num_classes:
                raise TransferError(f"{name}: {count} classes of {per_class} images, but the set has {num_classes}")
            classes = random_classes(num_classes, count, seed)
    keep = sample_lines(labels, num_classes, per_class, seed, classes)
    if classes is None:
        return {"files.txt": "".join(f"{paths[i]} {labels[i]}\n" for i in keep)}
    new = {orig: i for i, orig in enumerate(classes)}
    return {"files.txt": "".join(f"{paths[i]} {new[labels[i]]}\n" for i in keep),
            "idxmap.txt": IDXMAP_HEADER + "".join(f"{o} {n}\n" for o, n in new.items())}
