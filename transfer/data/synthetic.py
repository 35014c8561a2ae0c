"""A built-in SYNTHETIC image dataset laid out like ILSVRC2012, for running the pipeline on a CPU.

    OUT/train/<wnid>/<wnid>_<k>.JPEG     training images, one folder per class
    OUT/val/<wnid>_val_<k>.JPEG          validation images, one flat folder (labels in val.txt)
    OUT/train.txt, OUT/val.txt           Caffe lists: "relative/path.JPEG label", labels 0..C-1
    OUT/synsets.txt, synset_words.txt    class ids s0000, s0001, ... (never WordNet ids)
    OUT/manmade.txt, OUT/natural.txt     the two superclasses as ascending class indices
    OUT/README.txt, OUT/manifest.json    what this is, with which parameters; sha256 of the lists

Classes alternate man-made (even index) and natural (odd index), so neither superclass is a
contiguous block of labels. How the images are drawn, and why: synthetic_draw.py and
docs/small-scale.md.

The classes form a small taxonomy, the synthetic stand-in for WordNet: class -> kind (its family,
named by the family's primary part, e.g. `kind-windows`) -> `manmade` / `natural` -> `root`. The
classes of a kind share their body plan (primary and satellite parts), as the classes under one
WordNet synset share a look. The tree follows from the parameters alone (`class_tree`).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..core import argtypes
from ..core.errors import TransferError
from ..core.files import digest, read_json
from .synthetic_draw import CLASSES_PER_FAMILY, MANMADE_PARTS, WORDS, Family, Recipe, make_families, make_recipe, render

GENERATOR_VERSION = 2  # bump when the drawing changes, so old datasets are refused, not reused
LISTS = ("train.txt", "val.txt", "synsets.txt", "synset_words.txt", "manmade.txt", "natural.txt")
BATCH = 25  # images drawn at once: big enough to vectorise, small enough to stay in cache


def wnid(k: int) -> str:
    return f"s{k:04d}"


def families(num_classes: int, seed: int) -> dict[bool, list[Family]]:
    """The families (kinds) of each superclass: about CLASSES_PER_FAMILY classes each."""
    per_super = num_classes // 2
    count = min(len(MANMADE_PARTS), max(1, -(-per_super // CLASSES_PER_FAMILY)))
    return {manmade: make_families(np.random.default_rng([seed, 1 if manmade else 2]), manmade, count)
            for manmade in (True, False)}


def recipes(num_classes: int, seed: int) -> list[Recipe]:
    """The classes: even indices man-made, odd natural; a superclass's classes deal out its families
    in turn, so a family's classes are spread over the label range (and over random halves)."""
    fams = families(num_classes, seed)
    out: list[Recipe] = []
    for k in range(num_classes):
        manmade = k % 2 == 0
        group = fams[manmade]
        out.append(make_recipe(np.random.default_rng([seed, 3, k]), group[(k // 2) % len(group)]))
    return out


TREE_ROOT = "root"
SUPERCLASSES = {True: "manmade", False: "natural"}


def class_tree(num_classes: int, seed: int) -> tuple[dict[str, str | None], dict[str, str]]:
    """(parent of every node, words of every node): class -> kind -> manmade/natural -> root.

    A class's kind is its family, named by the family's primary (largest) part, so classes of one
    kind share their most visible mid-level features, as the classes under one WordNet synset do."""
    parents: dict[str, str | None] = {TREE_ROOT: None}
    words = {TREE_ROOT: "synthetic object"}
    for manmade, sup in SUPERCLASSES.items():
        parents[sup] = TREE_ROOT
        words[sup] = "man-made" if manmade else "natural"
    for k, recipe in enumerate(recipes(num_classes, seed)):
        sup = SUPERCLASSES[recipe.manmade]
        primary = recipe.parts[0].kind
        kind = f"kind-{primary}"
        parents[kind] = sup
        words[kind] = f"{words[sup]}: {WORDS[primary]}"
        parents[wnid(k)] = kind
        words[wnid(k)] = recipe.name()
    return parents, words


def is_synthetic(out: Path) -> bool:
    """Whether `out` holds a dataset made by make_synthetic (its manifest says so)."""
    manifest = Path(out) / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("dataset", "").startswith("transfer synthetic")
    except (json.JSONDecodeError, AttributeError):
        return False


def dataset_tree(out: Path) -> tuple[dict[str, str | None], dict[str, str]]:
    """The class taxonomy of the synthetic dataset in `out`, from its manifest's parameters."""
    manifest = Path(out) / "manifest.json"
    try:
        params = json.loads(manifest.read_text())["parameters"]
        num_classes, seed = int(params["num_classes"]), int(params["seed"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise TransferError(f"{manifest}: not a synthetic dataset's manifest ({exc})") from None
    if params.get("generator") != GENERATOR_VERSION:
        raise TransferError(f"{manifest}: generator version {params.get('generator')}, this code draws "
                            f"version {GENERATOR_VERSION}; remake the dataset")
    return class_tree(num_classes, seed)


def check_params(num_classes: int, train_per_class: int, val_per_class: int, size: int,
                 quality: int) -> None:
    if num_classes < 4 or num_classes % 2:
        raise TransferError(f"--classes must be an even number >= 4, got {num_classes}")
    if num_classes > 9999:
        raise TransferError(f"--classes must be at most 9999, got {num_classes}")
    if train_per_class < 1 or val_per_class < 1:
        raise TransferError(f"images per class must be >= 1, got train "
                            f"{train_per_class}, val {val_per_class}")
    if not 16 <= size <= 512:
        raise TransferError(f"--size must be between 16 and 512, got {size}")
    if not 1 <= quality <= 100:
        raise TransferError(f"--quality must be between 1 and 100, got {quality}")


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _write_images(root: Path, classes: list[Recipe], split: str, per_class: int, size: int,
                  seed: int, quality: int) -> list[str]:
    """Draw and save one split; returns its Caffe list lines."""
    lines = []
    for label, recipe in enumerate(classes):
        name = wnid(label)
        rng = np.random.default_rng([seed, 4 if split == "train" else 5, label])
        folder = root / split / name if split == "train" else root / split
        folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, per_class, BATCH):
            batch = render(recipe, min(BATCH, per_class - start), size, rng)
            for i, pixels in enumerate(batch, start):
                file = f"{name}_{i}.JPEG" if split == "train" else f"{name}_val_{i}.JPEG"
                (folder / file).write_bytes(_jpeg(pixels, quality))
                lines.append(f"{(folder / file).relative_to(root).as_posix()} {label}")
    if split == "val":  # ILSVRC's val folder is not grouped by class; neither is ours
        np.random.default_rng([seed, 6]).shuffle(lines)
    return lines


def _reuse(out: Path, params: dict) -> bool:
    """Whether `out` already holds this very dataset (refusing anything else that is there)."""
    if not (out.exists() and any(out.iterdir())):
        return False
    manifest = out / "manifest.json"
    if not manifest.is_file():
        raise TransferError(f"{out} exists and is not a synthetic dataset "
                            f"(no manifest.json); choose another --out")
    record = read_json(manifest, "the synthetic dataset's manifest", f"delete {out} to draw it again")
    old = record.get("parameters") if isinstance(record, dict) else None
    if old != params:
        diff = ", ".join(f"{k} {old.get(k) if old else None} != {v}"
                         for k, v in params.items() if not old or old.get(k) != v)
        raise TransferError(f"{out} holds a dataset with other parameters "
                            f"({diff}); remove it or choose another --out")
    return True


def _write_dataset(tmp: Path, params: dict) -> None:
    """Images, lists, README and manifest of the dataset, into the (temporary) directory `tmp`."""
    n, size, seed, quality = params["num_classes"], params["size"], params["seed"], params["quality"]
    classes = recipes(n, seed)
    train = _write_images(tmp, classes, "train", params["train_per_class"], size, seed, quality)
    val = _write_images(tmp, classes, "val", params["val_per_class"], size, seed, quality)
    manmade = [k for k, r in enumerate(classes) if r.manmade]
    natural = [k for k, r in enumerate(classes) if not r.manmade]
    texts = {
        "train.txt": train, "val.txt": val,
        "synsets.txt": [wnid(k) for k in range(n)],
        "synset_words.txt": [f"{wnid(k)} {r.name()}" for k, r in enumerate(classes)],
        "manmade.txt": [str(k) for k in manmade], "natural.txt": [str(k) for k in natural],
    }
    for name, rows in texts.items():
        (tmp / name).write_text("".join(f"{row}\n" for row in rows))
    (tmp / "README.txt").write_text(_readme(params))
    manifest = {
        "dataset": "transfer synthetic (not ImageNet)", "parameters": params,
        "counts": {"classes": n, "train": len(train), "val": len(val),
                   "manmade": len(manmade), "natural": len(natural)},
        "sha256": {name: digest(tmp / name) for name in LISTS},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def make_synthetic(out: Path, num_classes: int = 20, train_per_class: int = 260,
                   val_per_class: int = 50, size: int = 64, seed: int = 0,
                   quality: int = 90) -> Path:
    """Write the dataset into `out` (reusing it if it was made with the same parameters)."""
    out = Path(out)
    check_params(num_classes, train_per_class, val_per_class, size, quality)
    params = {"generator": GENERATOR_VERSION, "num_classes": num_classes,
              "train_per_class": train_per_class, "val_per_class": val_per_class,
              "size": size, "seed": seed, "quality": quality}
    if _reuse(out, params):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _write_dataset(tmp, params)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        if out.exists():
            out.rmdir()  # an empty directory left for us
        os.rename(tmp, out)  # atomic: a half-written dataset never looks finished
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _readme(params: dict) -> str:
    p = params
    return f"""SYNTHETIC image dataset made by `transfer synthetic make` (generator version {p['generator']}).
It is NOT ImageNet: the images are drawn procedurally, the class ids s0000... are made up.

Parameters: {p['num_classes']} classes, {p['train_per_class']} train and {p['val_per_class']} val
images per class, {p['size']}x{p['size']} pixels, JPEG quality {p['quality']}, seed {p['seed']}.

Classes alternate between two superclasses, like ImageNet's man-made / natural split:
  man-made (manmade.txt): straight edges, right angles, uniform colour, regular repetition
      (panels, frames, window grids, stripes, checks, crosses, polygons, rings), on flat walls
      and floors meeting at a straight seam;
  natural  (natural.txt): curved and fractal contours, textures, shading (shaded glows, lobed
      blobs, fur, spotted hides, mottle, wavy fibres, ripples, crescents), on textured ground.
Both share one colour palette, lighting gradients and sensor noise. Each superclass falls into
families (kinds) of about {CLASSES_PER_FAMILY} classes sharing a body plan (a primary and a satellite part);
a class adds a third part, its own layout, proportions and colours.
Each image jitters position, scale, rotation, colours, adds clutter of its superclass and noise.
Layout and list formats follow ILSVRC2012 as used by Caffe (train.txt, val.txt: "path label").
"""


def contact_sheet(out_dir: Path, path: Path, per_class: int = 8, max_classes: int = 20,
                  split: str = "train") -> Path:
    """A PNG grid: one row per class (man-made rows are even), `per_class` images from each."""
    out_dir, path = Path(out_dir), Path(path)
    rows: dict[int, list[str]] = {}
    for line in (out_dir / f"{split}.txt").read_text().splitlines():
        rel, label = line.rsplit(" ", 1)
        rows.setdefault(int(label), []).append(rel)
    labels = sorted(rows)[:max_classes]
    first = Image.open(out_dir / rows[labels[0]][0])
    w, h = first.size
    gap = 2
    sheet = Image.new("RGB", (per_class * (w + gap), len(labels) * (h + gap)), "white")
    for r, label in enumerate(labels):
        for c, rel in enumerate(rows[label][:per_class]):
            sheet.paste(Image.open(out_dir / rel).convert("RGB"), (c * (w + gap), r * (h + gap)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _cmd_make(args: argparse.Namespace) -> int:
    out = make_synthetic(Path(args.out), num_classes=args.classes,
                         train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                         size=args.size, seed=args.seed, quality=args.quality)
    manifest = read_json(out / "manifest.json", "the synthetic dataset's manifest", f"delete {out} to draw it again")
    counts = manifest["counts"]
    print(f"synthetic dataset at {out}: {counts['classes']} classes, "
          f"{counts['train']} train, {counts['val']} val images")
    if args.sheet:
        print(f"contact sheet: {contact_sheet(out, Path(args.sheet))}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("synthetic", help="the built-in synthetic dataset")
    sub = parser.add_subparsers(dest="synthetic_command", metavar="ACTION")
    sub.required = True
    make = sub.add_parser("make", help="write a synthetic ILSVRC-like dataset (reused if present)")
    make.add_argument("--out", required=True, help="dataset directory to create")
    make.add_argument("--classes", type=int, default=20, help="even number of classes (20)")
    make.add_argument("--train-per-class", type=int, default=260, help="train images per class")
    make.add_argument("--val-per-class", type=int, default=50, help="val images per class")
    make.add_argument("--size", type=int, default=64, help="image side in pixels (64)")
    make.add_argument("--seed", type=argtypes.seed, default=0, help="seed of the drawn images (default 0)")
    make.add_argument("--quality", type=int, default=90, help="JPEG quality (90)")
    make.add_argument("--sheet", metavar="PNG", help="also save a contact sheet of the classes")
    make.set_defaults(func=_cmd_make)
