"""The synthetic dataset: determinism, layout, reuse/refusal, and that the task has structure."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer.core.errors import TransferError
from transfer.data.synthetic import class_tree, contact_sheet, make_synthetic, recipes
from transfer.data.synthetic_draw import CLASSES_PER_FAMILY, MANMADE_PARTS, NATURAL_PARTS

SMALL = dict(num_classes=4, train_per_class=3, val_per_class=2, size=32)


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def read_list(path: Path) -> list[tuple[str, int]]:
    return [(p, int(label)) for p, label in (line.rsplit(" ", 1) for line in path.read_text().splitlines())]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Big enough for a statistical check, small enough to draw in about a second."""
    return make_synthetic(tmp_path_factory.mktemp("syn") / "d", num_classes=10,
                          train_per_class=60, val_per_class=30, seed=0)


def test_deterministic(tmp_path):
    a = make_synthetic(tmp_path / "a", seed=3, **SMALL)
    b = make_synthetic(tmp_path / "b", seed=3, **SMALL)
    c = make_synthetic(tmp_path / "c", seed=4, **SMALL)
    assert tree_hash(a) == tree_hash(b)
    assert tree_hash(a) != tree_hash(c)
    assert (a / "val" / "s0001_val_1.JPEG").read_bytes() != (c / "val" / "s0001_val_1.JPEG").read_bytes()


def test_layout_and_lists(data):
    synsets = (data / "synsets.txt").read_text().split()
    assert synsets == [f"s{k:04d}" for k in range(10)]
    words = (data / "synset_words.txt").read_text().splitlines()
    assert [w.split(" ", 1)[0] for w in words] == synsets and all(len(w) > 8 for w in words)

    train, val = read_list(data / "train.txt"), read_list(data / "val.txt")
    assert len(train) == 600 and len(val) == 300
    for rel, label in train:
        assert rel == f"train/{synsets[label]}/{Path(rel).name}" and (data / rel).is_file()
    for rel, label in val:
        assert rel.startswith("val/") and Path(rel).name.startswith(synsets[label])
        assert (data / rel).is_file()
    assert np.bincount([l for _, l in train]).tolist() == [60] * 10
    assert np.bincount([l for _, l in val]).tolist() == [30] * 10
    assert len({r for r, _ in train + val}) == 900  # no file listed twice

    manmade = [int(x) for x in (data / "manmade.txt").read_text().split()]
    natural = [int(x) for x in (data / "natural.txt").read_text().split()]
    assert manmade == sorted(manmade) and natural == sorted(natural)
    assert sorted(manmade + natural) == list(range(10)) and len(manmade) == len(natural) == 5

    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["counts"]["train"] == 600 and manifest["parameters"]["num_classes"] == 10
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((data / name).read_bytes()).hexdigest() == digest
    readme = (data / "README.txt").read_text()
    assert "SYNTHETIC" in readme and "NOT ImageNet" in readme and "10 classes" in readme

    with Image.open(data / train[0][0]) as im:
        assert im.format == "JPEG" and im.size == (64, 64) and im.mode == "RGB"
    assert not [p for p in data.parent.iterdir() if ".partial-" in p.name]


def test_reuse_and_refuse(tmp_path):
    out = make_synthetic(tmp_path / "d", seed=1, **SMALL)
    before = tree_hash(out)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert make_synthetic(tmp_path / "d", seed=1, **SMALL) == out  # reused, not redrawn
    assert (out / "manifest.json").stat().st_mtime_ns == stamp and tree_hash(out) == before
    with pytest.raises(TransferError, match="seed 1 != 2"):
        make_synthetic(tmp_path / "d", seed=2, **SMALL)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("mine")
    with pytest.raises(TransferError, match="not a synthetic dataset"):
        make_synthetic(tmp_path / "other", **SMALL)
    (tmp_path / "empty").mkdir()  # an empty directory is fine to fill
    assert (make_synthetic(tmp_path / "empty", **SMALL) / "manifest.json").is_file()


@pytest.mark.parametrize("kwargs, value", [
    (dict(num_classes=7), "7"), (dict(num_classes=2), "2"), (dict(train_per_class=0), "0"),
    (dict(size=8), "8"), (dict(quality=0), "0"),
])
def test_bad_parameters(tmp_path, kwargs, value):
    with pytest.raises(TransferError, match=rf"\b{value}\b"):
        make_synthetic(tmp_path / "d", **{**SMALL, **kwargs})
    assert not (tmp_path / "d").exists()


def test_cli(tmp_path, capsys):
    from transfer.cli import main
    args = ["synthetic", "make", "--out", str(tmp_path / "d"), "--classes", "4",
            "--train-per-class", "2", "--val-per-class", "1", "--size", "32"]
    assert main(args) == 0 and "4 classes, 8 train, 4 val" in capsys.readouterr().out
    assert main(args[:-1] + ["48"]) == 2
    assert "size 32 != 48" in capsys.readouterr().err


def features(data: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Simple features: colour statistics and how many edges of each strength (no shapes)."""
    rows = read_list(data / f"{split}.txt")
    x = np.stack([np.asarray(Image.open(data / r), dtype=np.float32) / 255 for r, _ in rows])
    grey = x.mean(3)
    grad = np.concatenate([np.abs(np.diff(grey, axis=1)).reshape(len(x), -1),
                           np.abs(np.diff(grey, axis=2)).reshape(len(x), -1)], axis=1)
    edges = [(grad > t).mean(1) * 10 for t in (0.05, 0.1, 0.2, 0.3)]
    f = np.concatenate([x.mean((1, 2)), x.std((1, 2)), np.stack(edges, 1)], axis=1)
    return f, np.array([label for _, label in rows])


def nearest_mean(ft, yt, fv) -> np.ndarray:
    means = np.stack([ft[yt == c].mean(0) for c in range(yt.max() + 1)])
    return ((fv[:, None] - means[None]) ** 2).sum(2).argmin(1)


def test_task_structure(data):
    ft, yt = features(data, "train")
    fv, yv = features(data, "val")
    mu, sd = ft.mean(0), ft.std(0) + 1e-6
    ft, fv = (ft - mu) / sd, (fv - mu) / sd
    edges = slice(6, None)  # no colour: the kind of edges is what a superclass shares
    manmade = np.zeros(10, bool)
    manmade[[int(x) for x in (data / "manmade.txt").read_text().split()]] = True

    # Classes: learnable from simple statistics, but far from solved by them (chance 0.1).
    class_acc = (nearest_mean(ft, yt, fv) == yv).mean()
    assert 0.25 < class_acc < 0.8, class_acc

    # Superclass (chance 0.5) is easier than class, even from edge statistics alone ...
    super_acc = (nearest_mean(ft[:, edges], manmade[yt].astype(int), fv[:, edges]) == manmade[yv]).mean()
    assert super_acc > 0.65 and super_acc > class_acc, (super_acc, class_acc)
    # ... and mistakes between classes stay within the superclass more often than chance (4/9).
    pred = nearest_mean(ft[:, edges], yt, fv[:, edges])
    wrong = pred != yv
    within = (manmade[pred[wrong]] == manmade[yv[wrong]]).mean()
    assert within > 0.5, within


def test_contact_sheet(data, tmp_path):
    path = contact_sheet(data, tmp_path / "sheet.png", per_class=4)
    with Image.open(path) as im:
        assert im.size == (4 * 66, 10 * 66)


def test_families():
    """Each superclass falls into families of about CLASSES_PER_FAMILY classes that share a body plan
    (primary and satellite part kinds); the class tree's kinds are these families."""
    for classes in (10, 20, 32):
        rs = recipes(classes, 0)
        parents, _ = class_tree(classes, 0)
        fams: dict[str, list[int]] = {}
        for k, r in enumerate(rs):
            assert r.manmade == (k % 2 == 0)
            pool = MANMADE_PARTS if r.manmade else NATURAL_PARTS
            assert {p.kind for p in r.parts} <= set(pool)   # no part of the other superclass
            assert len({p.kind for p in r.parts}) == len(r.parts) == 3
            fams.setdefault(parents[f"s{k:04d}"], []).append(k)
        for kind, members in fams.items():
            assert kind == f"kind-{rs[members[0]].parts[0].kind}"
            assert len({(rs[k].parts[0].kind, rs[k].parts[1].kind) for k in members}) == 1
            assert len({rs[k].manmade for k in members}) == 1
        for manmade in (True, False):   # families of one superclass: as even as can be, at most 4 classes
            sizes = [len(m) for m in fams.values() if rs[m[0]].manmade == manmade]
            assert max(sizes) <= CLASSES_PER_FAMILY and max(sizes) - min(sizes) <= 1
            assert len(sizes) == -(-classes // 2 // CLASSES_PER_FAMILY)
        # a family's classes take turns with the other families' (spread over the labels, not a block)
        assert all(len({k % len(fams) for k in m}) == 1 for m in fams.values())
    assert len(set(class_tree(32, 0)[0].values()) - {None, "root", "manmade", "natural"}) == 8


def shape_features(data: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Colour-blind features: gradient energy by orientation and the image's power spectrum by frequency."""
    rows = read_list(data / f"{split}.txt")
    grey = np.stack([np.asarray(Image.open(data / r), dtype=np.float32).mean(2) / 255 for r, _ in rows])
    gy, gx = np.gradient(grey, axis=(1, 2))
    bins = (np.mod(np.arctan2(gy, gx), np.pi) / np.pi * 8).astype(int) % 8
    hist = np.stack([(np.hypot(gx, gy) * (bins == b)).mean((1, 2)) for b in range(8)], 1)
    power = np.abs(np.fft.fft2(grey - grey.mean((1, 2), keepdims=True))) ** 2
    f = np.fft.fftfreq(grey.shape[1])
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    radial = [np.log(power[:, (radius >= lo) & (radius < lo + 0.05)].mean(1) + 1e-6) for lo in np.arange(0.02, 0.5, 0.05)]
    return np.concatenate([hist, np.stack(radial, 1)], 1), np.array([label for _, label in rows])


def test_hierarchy_shows_in_low_level_statistics(tmp_path):
    """Without colour, a nearest-class-mean classifier's mistakes stay within the superclass and, within
    it, within the family more often than chance: the tree is visual, not only a naming."""
    d = make_synthetic(tmp_path / "d", num_classes=16, train_per_class=60, val_per_class=30, size=48, seed=0)
    ft, yt = shape_features(d, "train")
    fv, yv = shape_features(d, "val")
    mu, sd = ft.mean(0), ft.std(0) + 1e-6
    pred = nearest_mean((ft - mu) / sd, yt, (fv - mu) / sd)
    parents, _ = class_tree(16, 0)
    kind = np.array([parents[f"s{k:04d}"] for k in range(16)])
    manmade = np.arange(16) % 2 == 0
    wrong = pred != yv
    assert (pred == yv).mean() > 3 / 16                          # chance 1/16
    assert (manmade[pred[wrong]] == manmade[yv[wrong]]).mean() > 0.65   # chance 7/15
    same_sup = wrong & (manmade[pred] == manmade[yv])
    chance = np.mean([((kind == kind[c]).sum() - 1) / 7 for c in range(16)])
    assert (kind[pred[same_sup]] == kind[yv[same_sup]]).mean() > chance + 0.1
