"""The ILSVRC2012 on-ramp: Caffe's train.txt / val.txt from the dataset as distributed, on a small fake
ImageNet (real JPEGs written with Pillow, a devkit meta.mat written with scipy in the real structure)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import tinyrun  # noqa: E402

from transfer import REPO
from transfer.data import classlists as splits, ilsvrc  # noqa: E402
from transfer.data.build import build  # noqa: E402
from transfer.data.lmdb_store import read_manifest  # noqa: E402
from transfer.data.verify import verify  # noqa: E402
from transfer.core.errors import TransferError  # noqa: E402

sio = pytest.importorskip("scipy.io")

# meta.mat order (ILSVRC2012_ID 1..4) is not the wnids' sorted order, as in the real devkit.
CLASSES = [(1, "n02119789", "kit fox, Vulpes macrotis"), (2, "n01751748", "sea snake"),
           (3, "n04590129", "window shade"), (4, "n01440764", "tench, Tinca tinca")]
INNER = [(5, "n00001740", "entity", [6]), (6, "n00015388", "animal, animate being", [1, 2, 4])]
TRAIN_NUMBERS = ("10026", "1009", "10095")   # byte order puts 1009.JPEG between 10026 and 10095
GROUND_TRUTH = [2, 4, 1, 3, 2, 4]

# What Caffe's own lists say for this layout, written by hand: labels are positions in synsets.txt
# (n01440764 0, n01751748 1, n02119789 2, n04590129 3), not ILSVRC2012_IDs.
CAFFE_TRAIN = """\
n01440764/n01440764_10026.JPEG 0
n01440764/n01440764_1009.JPEG 0
n01440764/n01440764_10095.JPEG 0
n01751748/n01751748_10026.JPEG 1
n01751748/n01751748_1009.JPEG 1
n01751748/n01751748_10095.JPEG 1
n02119789/n02119789_10026.JPEG 2
n02119789/n02119789_1009.JPEG 2
n02119789/n02119789_10095.JPEG 2
n04590129/n04590129_10026.JPEG 3
n04590129/n04590129_1009.JPEG 3
n04590129/n04590129_10095.JPEG 3
"""
CAFFE_VAL = """\
ILSVRC2012_val_00000001.JPEG 1
ILSVRC2012_val_00000002.JPEG 0
ILSVRC2012_val_00000003.JPEG 2
ILSVRC2012_val_00000004.JPEG 3
ILSVRC2012_val_00000005.JPEG 1
ILSVRC2012_val_00000006.JPEG 0
"""


def write_meta(path: Path, classes, inner=()) -> None:
    """A devkit meta.mat: `synsets`, an Nx1 struct array with the devkit's eight fields."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    rows = [(i, w, words, f"gloss of {w}", 0, np.zeros((1, 0)), 0, 3) for i, w, words in classes]
    rows += [(i, w, words, "", len(ch), np.array([ch], dtype=float), 1, 0) for i, w, words, ch in inner]
    arr = np.zeros((len(rows), 1), dtype=[(f, "O") for f in fields])
    for r, row in enumerate(rows):
        for f, v in zip(fields, row):
            arr[r, 0][f] = np.array([[float(v)]]) if isinstance(v, int) else v
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.savemat(str(path), {"synsets": arr})


def _jpeg(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = int(rng.integers(20, 40)), int(rng.integers(20, 40))
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=90)


def fake_imagenet(root: Path) -> Path:
    """root/ILSVRC2012 with train/, val/ and ILSVRC2012_devkit_t12/ inside."""
    rng = np.random.default_rng(0)
    top = root / "ILSVRC2012"
    for _, wnid, _ in CLASSES:
        for num in TRAIN_NUMBERS:
            _jpeg(top / "train" / wnid / f"{wnid}_{num}.JPEG", rng)
    for i in range(1, len(GROUND_TRUTH) + 1):
        _jpeg(top / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", rng)
    kit = top / "ILSVRC2012_devkit_t12" / "data"
    write_meta(kit / "meta.mat", CLASSES, INNER)
    (kit / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{g}\n" for g in GROUND_TRUTH))
    return top


@pytest.fixture()
def imagenet(tmp_path) -> Path:
    return fake_imagenet(tmp_path)


def test_lists_are_caffes(imagenet, tmp_path):
    out = tmp_path / "lists"
    paths = ilsvrc.write_caffe_lists(imagenet, out)
    assert paths["train.txt"].read_text() == CAFFE_TRAIN
    assert paths["val.txt"].read_text() == CAFFE_VAL
    assert paths["synsets.txt"].read_text() == "n01440764\nn01751748\nn02119789\nn04590129\n"
    assert paths["synset_words.txt"].read_text().splitlines()[0] == "n01440764 tench, Tinca tinca"
    assert ilsvrc.write_caffe_lists(imagenet, out) == paths  # a rerun writes nothing new, refuses nothing


def test_first_val_line_is_caffes_with_the_paper_classes(tmp_path):
    """Caffe's val.txt starts `ILSVRC2012_val_00000001.JPEG 65`: ground truth ID 490 is n01751748,
    the 66th wnid of synsets.txt; a devkit whose IDs are not sorted by wnid must still give 65."""
    wnids = splits.load_split_dir().wnids
    order = list(np.random.default_rng(1).permutation(len(wnids)))
    at = order.index(wnids.index("n01751748"))
    order[at], order[489] = order[489], order[at]      # ID 490 (position 489) is the sea snake
    write_meta(tmp_path / "kit" / "data" / "meta.mat", [(i + 1, wnids[j], "") for i, j in enumerate(order)])
    (tmp_path / "kit" / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text("490\n1\n")
    (tmp_path / "val").mkdir()
    for i in (1, 2):
        (tmp_path / "val" / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"")
    synsets = ilsvrc.read_meta(tmp_path / "kit" / "data" / "meta.mat")
    label = {c.ilsvrc_id: wnids.index(c.wnid) for c in synsets}
    truth = ilsvrc.read_ground_truth(tmp_path / "kit" / "data" / "ILSVRC2012_validation_ground_truth.txt", 1000)
    lines = ilsvrc.val_lines(tmp_path / "val", truth, label)
    assert lines == ["ILSVRC2012_val_00000001.JPEG 65", f"ILSVRC2012_val_00000002.JPEG {order[0]}"]


def _break(top: Path, case: str) -> str:
    """Damage the fake layout one way; returns what the message must name."""
    kit = top / "ILSVRC2012_devkit_t12" / "data"
    if case == "class folder missing":
        for f in (top / "train" / "n04590129").iterdir():
            f.unlink()
        (top / "train" / "n04590129").rmdir()
        return "n04590129"
    if case == "foreign class folder":
        (top / "train" / "n09999999").mkdir()
        return "n09999999"
    if case == "class still packed":
        for f in (top / "train" / "n02119789").iterdir():
            f.unlink()
        (top / "train" / "n02119789" / "n02119789.tar").write_bytes(b"")
        return "n02119789: no images"
    if case == "val image missing":
        (top / "val" / "ILSVRC2012_val_00000004.JPEG").unlink()
        return "ILSVRC2012_val_00000004.JPEG"
    if case == "val sorted into folders":
        for f in list((top / "val").iterdir()):  # as some tools rearrange it: val/<wnid>/*.JPEG
            (top / "val" / "n01440764").mkdir(exist_ok=True)
            f.rename(top / "val" / "n01440764" / f.name)
        return "ILSVRC2012_val_00000001.JPEG"
    if case == "ground truth out of range":
        (kit / "ILSVRC2012_validation_ground_truth.txt").write_text("2\n4\n1001\n")
        return "ILSVRC2012_validation_ground_truth.txt:3:"
    if case == "ground truth not numbers":
        (kit / "ILSVRC2012_validation_ground_truth.txt").write_text("2\nn01440764\n")
        return "ILSVRC2012_validation_ground_truth.txt:2:"
    if case == "meta.mat lacks a field":
        sio.savemat(str(kit / "meta.mat"), {"synsets": np.zeros((2, 1), dtype=[("WNID", "O")])})
        return "meta.mat: 'synsets' lacks the field(s) ILSVRC2012_ID"
    if case == "meta.mat not MATLAB":
        (kit / "meta.mat").write_text("not a mat file")
        return "meta.mat: not a readable MATLAB file"
    if case == "no devkit":
        (kit / "meta.mat").unlink()
        return "no ILSVRC2012 devkit found"
    if case == "symlink loop":
        # as a copy made with `cp -rs` gone wrong: listed as an image, the build failed later
        (top / "train" / "n01751748" / "n01751748_7.JPEG").symlink_to("n01751748_7.JPEG")
        return (f"{top / 'train' / 'n01751748' / 'n01751748_7.JPEG'}: a symbolic link that loops "
                f"({top / 'train' / 'n01751748' / 'n01751748_7.JPEG'} -> n01751748_7.JPEG), not an image file")
    if case == "link to nothing":
        (top / "val" / "ILSVRC2012_val_00000007.JPEG").symlink_to("/nonexistent/x.JPEG")
        return "ILSVRC2012_val_00000007.JPEG: a symbolic link to nothing"
    if case == "folder named like an image":
        (top / "train" / "n01440764" / "n01440764_5.JPEG").mkdir()
        return "n01440764_5.JPEG: a folder, not an image file"
    if case == "space in a file name":
        (top / "train" / "n01440764" / "a b.JPEG").write_bytes(b"")
        return "a b.JPEG"
    raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "class folder missing", "foreign class folder", "class still packed", "val image missing",
    "val sorted into folders", "ground truth out of range", "ground truth not numbers",
    "meta.mat lacks a field", "meta.mat not MATLAB", "no devkit", "space in a file name", "symlink loop",
    "link to nothing", "folder named like an image"])
def test_bad_layout_is_named_and_writes_nothing(imagenet, tmp_path, case, capsys):
    from transfer import cli

    culprit = _break(imagenet, case)
    out = tmp_path / "lists"
    code = cli.main(["ilsvrc", "lists", "--imagenet", str(imagenet), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and culprit in err, err
    assert not out.exists()


def test_other_content_is_not_overwritten(imagenet, tmp_path):
    out = tmp_path / "lists"
    ilsvrc.write_caffe_lists(imagenet, out)
    _jpeg(imagenet / "train" / "n01440764" / "n01440764_2.JPEG", np.random.default_rng(2))
    with pytest.raises(TransferError, match=r"train.txt exists with other content"):
        ilsvrc.write_caffe_lists(imagenet, out)
    assert (out / "train.txt").read_text() == CAFFE_TRAIN


def test_devkit_must_hold_the_split_classes(imagenet, tmp_path):
    wnids = ["n01440764", "n01751748", "n02119789", "n04590130"]
    with pytest.raises(TransferError, match=r"only in the devkit: n04590129; only in the class list: n04590130"):
        ilsvrc.caffe_lists(imagenet, wnids=wnids)


@pytest.mark.requires_caffe
def test_prepare_from_imagenet_equals_caffes_lists(imagenet, tmp_path):
    """`transfer prepare --imagenet DIR` (what `make data IMAGENET_DIR=DIR` runs) gives the databases that
    Caffe's own lists give."""
    split_dir = tmp_path / "splits"
    split_dir.mkdir()
    (split_dir / "synsets.txt").write_text("n01440764\nn01751748\nn02119789\nn04590129\n")
    splits.make_splits(split_dir)
    config = yaml.safe_load(tinyrun.TINY.read_text())
    del config["synthetic"]
    config.update(data_dir=str(tmp_path / "data"), runs_dir=str(tmp_path / "runs"), split_dir=str(split_dir),
                  nets_dir=str(tmp_path / "prototxt"), solvers_dir=str(tmp_path / "solvers"),
                  datasets={"half0A": 2, "half0B": 2}, experiments={"random_split": {"splits": [0], "n": [2]}})
    config["model"].update(image_size=32, crop=28)
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    res = tinyrun.run_cli("prepare", "--plan", str(tmp_path / "plan.yaml"), "--imagenet", str(imagenet),
                          "--jobs", "1")
    assert res.returncode == 0, res.stderr
    data = tmp_path / "data"
    assert (data / "lists" / "caffe" / "train.txt").read_text() == CAFFE_TRAIN
    assert (data / "lists" / "caffe" / "val.txt").read_text() == CAFFE_VAL
    # The same databases from the hand-written Caffe lists, built as prepare builds the whole set.
    (tmp_path / "train.txt").write_text(CAFFE_TRAIN)
    (tmp_path / "val.txt").write_text(CAFFE_VAL)
    ref_train = build(str(tmp_path / "train.txt"), str(imagenet / "train"), str(tmp_path / "ref_train"),
                               size=32, shuffle=True, seed=0, jobs=1)
    ref_val = build(str(tmp_path / "val.txt"), str(imagenet / "val"), str(tmp_path / "ref_val"),
                             size=32, jobs=1)
    for got, ref in ((data / "all" / "train_lmdb", ref_train), (data / "all" / "val_lmdb", ref_val)):
        assert _items(got) == _items(ref) and len(_items(got)) > 0
    assert read_manifest(data / "all" / "val_lmdb")["labels"] == {"0": 2, "1": 2, "2": 1, "3": 1}
    assert verify(str(data / "half0A" / "train_lmdb")) == []


def _items(db: Path) -> list[tuple[bytes, bytes]]:
    from transfer.data.lmdb_store import iter_items, open_read

    with open_read(db) as env:
        return [(k, bytes(v)) for k, v in iter_items(env)]


def test_paper_splits_are_caffes_synsets():
    """Labels follow the repository's synsets.txt, which is Caffe's (the wnids sorted)."""
    wnids = (REPO / "splits" / "synsets.txt").read_text().split()
    assert wnids == sorted(wnids) and len(wnids) == 1000
