"""Class splits and file lists: the committed splits/ regenerate byte for byte; derived lists are exact."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from transfer import REPO
from transfer.data import wordnet
from transfer.cli import main
from transfer.core.errors import TransferError
from transfer.data.classlists import (DEFAULT_LISTS, HALF_NAMES, SPLIT_DIR, format_indices, load_split_dir,
                                      make_splits, random_half)
from transfer.data import filelists
from transfer.plan.datasets import class_list_set, reduced_set


def write_lists(whole, out, names, split_dir=None):
    """Cut the lists of class lists and reduced sets (reducedNNNN) named as the paper names them."""
    specs = [reduced_set(int(n[len("reduced"):])) if n.startswith("reduced") else class_list_set(n) for n in names]
    filelists.write_lists(whole, out, specs, split_dir)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def wordnet_present() -> bool:
    try:
        wordnet.find_wordnet_dir()
        return True
    except TransferError:
        return False


# ------------------------------------------------------------------------------------------ the committed splits

def test_committed_splits_are_complete():
    split = load_split_dir()
    assert split.path == SPLIT_DIR and split.num_classes == 1000
    assert split.names() == sorted(DEFAULT_LISTS)
    assert split.wnids[0] == "n01440764" and split.words[0] == "tench, Tinca tinca"
    for s in range(4):
        a, b = split.pair(f"half{s}")
        assert (len(a), len(b)) == (500, 500)
    manmade, natural = split.pair("natman")
    assert (len(manmade), len(natural)) == (551, 449)


def test_natman_lists_are_the_released_files():
    # md5 of yosinski/convnet_transfer ilsvrc12/data/half_man_idx.txt and half_nat_idx.txt (released "B" and "A").
    assert md5(SPLIT_DIR / "manmade.txt") == "00bec6495ad8da1b6d054b8e101232b2"
    assert md5(SPLIT_DIR / "natural.txt") == "2eb1773cf4ea33b6f3af9e9a396a7a41"


@pytest.mark.parametrize("seed", range(4))
def test_committed_halves_regenerate(seed):
    a, b = random_half(seed, 1000)
    assert (SPLIT_DIR / f"half{seed}A.txt").read_text() == format_indices(a)
    assert (SPLIT_DIR / f"half{seed}B.txt").read_text() == format_indices(b)


@pytest.mark.skipif(not wordnet_present(), reason="WordNet 3.0 missing (Debian wordnet-base)")
def test_make_regenerates_committed_dir_byte_for_byte(tmp_path):
    written = make_splits(tmp_path, synsets=SPLIT_DIR / "synsets.txt")
    committed = sorted(p.name for p in SPLIT_DIR.glob("*.txt"))
    assert sorted(p.name for p in written) == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (SPLIT_DIR / name).read_bytes(), name
    assert make_splits(tmp_path) == []          # a rerun changes nothing


# ------------------------------------------------------------------------------------------ random halves

@pytest.mark.parametrize("n", [1000, 40, 20, 7])
@pytest.mark.parametrize("seed", [0, 3])
def test_random_half_is_the_released_recipe(seed, n):
    saved = np.random.get_state()
    try:
        np.random.seed([seed])      # the spec's recipe, literally, on the global legacy generator
        expected = sorted(np.random.choice(np.arange(n), n // 2, replace=False))
        after = np.random.random()
        a, b = random_half(seed, n)
        np.random.seed([seed]); np.random.choice(np.arange(n), n // 2, replace=False)
        assert np.random.random() == after       # random_half leaves the global generator alone
    finally:
        np.random.set_state(saved)
    assert a == [int(i) for i in expected]
    assert b == sorted(set(range(n)) - set(a)) and len(a) == n // 2
    assert all(type(i) is int for i in a + b)


def test_make_halves_for_a_small_synthetic_set(tmp_path):
    (tmp_path / "synsets.txt").write_text("".join(f"c{i:02d}\n" for i in range(20)))
    (tmp_path / "manmade.txt").write_text(format_indices(range(10)))   # the synthetic builder's own lists
    (tmp_path / "natural.txt").write_text(format_indices(range(10, 20)))
    written = make_splits(tmp_path, num_classes=20)
    assert sorted(p.name for p in written) == sorted(f"{n}.txt" for n in HALF_NAMES)
    split = load_split_dir(tmp_path)
    assert split.classes("half0A") == random_half(0, 20)[0]
    assert split.pair("natman") == (list(range(10)), list(range(10, 20)))   # untouched
    with pytest.raises(TransferError, match="--num-classes 40, but the synsets list has 20 classes"):
        make_splits(tmp_path, num_classes=40)


def test_make_without_synsets_needs_num_classes(tmp_path):
    with pytest.raises(TransferError, match="has no synsets.txt: pass --synsets FILE or --num-classes N"):
        make_splits(tmp_path)
    assert len(make_splits(tmp_path, num_classes=40)) == 8


def test_make_refuses_to_replace_different_lists(tmp_path):
    make_splits(tmp_path, num_classes=20)
    (tmp_path / "half2B.txt").write_text("0\n")
    with pytest.raises(TransferError, match=r"half2B.txt already exists with different content"):
        make_splits(tmp_path, num_classes=20)
    assert make_splits(tmp_path, num_classes=20, force=True) == [tmp_path / "half2B.txt"]


# ------------------------------------------------------------------------------------------ split directories

def make_split_dir(root: Path, lists: dict[str, list[int]], num_classes: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "synsets.txt").write_text("".join(f"n{i:08d}\n" for i in range(num_classes)))
    (root / "synset_words.txt").write_text("".join(f"n{i:08d} thing {i}\n" for i in range(num_classes)))
    for name, classes in lists.items():
        (root / f"{name}.txt").write_text(format_indices(classes))
    return root


@pytest.mark.parametrize("content, message", [
    ("0\n2\n9\n", r"half0A.txt:3: class 9 outside 0..5"),
    ("0\n2\n2\n", r"half0A.txt:3: class 2 not above the previous 2"),
    ("0\ntwo\n", r"half0A.txt:2: expected a class index, got 'two'"),
])
def test_bad_class_list_names_file_and_line(tmp_path, content, message):
    split = load_split_dir(make_split_dir(tmp_path, {}))
    (tmp_path / "half0A.txt").write_text(content)
    with pytest.raises(TransferError, match=message):
        split.classes("half0A")


def test_split_dir_errors(tmp_path):
    with pytest.raises(TransferError, match="is not a split directory: it has no synsets.txt"):
        load_split_dir(tmp_path)
    split = load_split_dir(make_split_dir(tmp_path, {"half0A": [0, 1, 2], "half0B": [3, 4]}))
    with pytest.raises(TransferError, match=r"no class list 'half9A' in .* \(has: half0A, half0B\)"):
        split.classes("half9A")
    with pytest.raises(TransferError, match="half0A and half0B do not partition the 6 classes"):
        split.pair("half0")
    (tmp_path / "synset_words.txt").write_text("n00000000 a\nn00000009 b\n" + "x y\n" * 4)
    with pytest.raises(TransferError, match=r"synset_words.txt:2: n00000009, but .*synsets.txt line 2 is n00000001"):
        load_split_dir(tmp_path)


# ------------------------------------------------------------------------------------------ write-lists

WHOLE = "a.jpg 4\nb.jpg 0\nc.jpg 1\nd.jpg 4\ne.jpg 3\nf.jpg 5\ng.jpg 2\nh.jpg 1\n"


@pytest.fixture
def setup(tmp_path):
    split_dir = make_split_dir(tmp_path / "split", {"half0A": [1, 3, 4], "half0B": [0, 2, 5]})
    whole = tmp_path / "whole.txt"
    whole.write_text(WHOLE)
    return split_dir, whole, tmp_path / "lists"


def test_write_lists_remaps_labels_and_keeps_order(setup):
    split_dir, whole, out = setup
    write_lists(whole, out, ["half0A", "half0B"], split_dir)
    assert (out / "half0A" / "files.txt").read_text() == "a.jpg 2\nc.jpg 0\nd.jpg 2\ne.jpg 1\nh.jpg 0\n"
    assert (out / "half0A" / "idxmap.txt").read_text() == "# Orig_idx new_idx\n1 0\n3 1\n4 2\n"
    assert (out / "half0B" / "files.txt").read_text() == "b.jpg 0\nf.jpg 2\ng.jpg 1\n"
    assert (out / "half0B" / "idxmap.txt").read_text() == "# Orig_idx new_idx\n0 0\n2 1\n5 2\n"
    assert sorted(p.name for p in out.rglob("*")) == ["files.txt", "files.txt", "half0A", "half0B",
                                                      "idxmap.txt", "idxmap.txt"]   # no temporary files left


def test_write_lists_reduced_keeps_first_n_per_class(setup):
    split_dir, whole, out = setup
    write_lists(whole, out, ["reduced0001", "reduced0002", "reduced1300"], split_dir)
    assert (out / "reduced0001" / "files.txt").read_text() == "a.jpg 4\nb.jpg 0\nc.jpg 1\ne.jpg 3\nf.jpg 5\ng.jpg 2\n"
    assert (out / "reduced0002" / "files.txt").read_text() == WHOLE
    assert (out / "reduced1300" / "files.txt").read_text() == WHOLE
    assert not (out / "reduced0001" / "idxmap.txt").exists()     # labels unchanged, as released: no map


def test_write_lists_normalises_whitespace_like_the_released_script(setup):
    split_dir, whole, out = setup
    whole.write_text(WHOLE.replace("a.jpg 4\n", "a.jpg\t 4 \r\n"))
    write_lists(whole, out, ["half0A"], split_dir)
    assert (out / "half0A" / "files.txt").read_text().startswith("a.jpg 2\nc.jpg 0\n")


def test_write_lists_rerun_is_a_no_op_and_different_content_is_refused(setup):
    split_dir, whole, out = setup
    write_lists(whole, out, ["half0A", "half0B"], split_dir)
    files = out / "half0A" / "files.txt"
    os.utime(files, (1, 1))
    write_lists(whole, out, ["half0A", "half0B"], split_dir)
    assert files.stat().st_mtime == 1                            # identical content: not even rewritten
    whole.write_text(WHOLE.replace("h.jpg 1", "h.jpg 3"))
    with pytest.raises(TransferError, match=r"half0A/files.txt already exists with different content"):
        write_lists(whole, out, ["half0B", "half0A"], split_dir)
    assert files.stat().st_mtime == 1
    assert (out / "half0B" / "files.txt").read_text() == "b.jpg 0\nf.jpg 2\ng.jpg 1\n"


@pytest.mark.parametrize("line, message", [
    ("x.jpg 6", r"whole.txt:9: label 6 outside 0..5"),
    ("x.jpg -1", r"whole.txt:9: label -1 outside 0..5"),
    ("x.jpg", r"whole.txt:9: expected 'path label', got 'x.jpg'"),
    ("my file.jpg 3", r"whole.txt:9: expected 'path label', got 'my file.jpg 3'"),
    ("x.jpg three", r"whole.txt:9: expected 'path label', got 'x.jpg three'"),
    ("", r"whole.txt:9: expected 'path label', got ''"),
])
def test_write_lists_bad_line_names_file_and_line(setup, line, message):
    split_dir, whole, out = setup
    whole.write_text(WHOLE + line + "\n")
    with pytest.raises(TransferError, match=message):
        write_lists(whole, out, ["half0A"], split_dir)
    assert not out.exists()


def test_write_lists_class_without_images(setup):
    split_dir, whole, out = setup
    whole.write_text(WHOLE.replace("e.jpg 3\n", ""))
    with pytest.raises(TransferError, match=r"whole.txt: class 3 \(n00000003 thing 3\) of half0A has no images"):
        write_lists(whole, out, ["half0B", "half0A"], split_dir)
    assert not out.exists()                                      # half0B was fine, but nothing is written
    with pytest.raises(TransferError, match=r"class 3 .* of reduced0005 has no images"):
        write_lists(whole, out, ["reduced0005"], split_dir)


def test_write_lists_unknown_name(setup):
    split_dir, whole, out = setup
    with pytest.raises(TransferError, match=r"no class list 'manmade'"):
        write_lists(whole, out, ["manmade"], split_dir)
    with pytest.raises(TransferError, match=r"bad list name '../x'"):
        write_lists(whole, out, ["../x"], split_dir)
    assert main(["splits", "write-lists", "--whole-list", str(whole), "--out", str(out), "--only", "../x",
                 "--splits", str(split_dir)]) == 2


def test_write_lists_paper_defaults_on_a_fake_imagenet_list(tmp_path):
    # Two images per ILSVRC class through the committed splits/: every default list, sizes and maps as expected.
    whole = tmp_path / "train.txt"
    whole.write_text("".join(f"{k}/img{j}.JPEG {k}\n" for j in range(2) for k in range(1000)))
    write_lists(whole, tmp_path / "out", list(DEFAULT_LISTS))
    split = load_split_dir()
    for name in DEFAULT_LISTS:
        lines = (tmp_path / "out" / name / "files.txt").read_text().splitlines()
        classes = split.classes(name)
        assert len(lines) == 2 * len(classes)
        assert lines[0] == f"{classes[0]}/img0.JPEG 0" and lines[-1] == f"{classes[-1]}/img1.JPEG {len(classes) - 1}"
        idxmap = (tmp_path / "out" / name / "idxmap.txt").read_text().splitlines()
        assert idxmap[1:] == [f"{c} {i}" for i, c in enumerate(classes)]


# ------------------------------------------------------------------------------------------ command line

def test_cli_show_pair(capsys):
    assert main(["splits", "show", "natman"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# manmade: 551 classes (index wnid name)"
    assert out[1] == "398 n02666196 abacus"
    assert "# natural: 449 classes (index wnid name)" in out
    assert out[-1] == "998 n13133613 ear, spike, capitulum"


def test_cli_write_lists_and_error_exit(setup, capsys):
    split_dir, whole, out = setup
    assert main(["splits", "write-lists", "--whole-list", str(whole), "--out", str(out),
                 "--only", "half0A", "--reduced", "1", "--splits", str(split_dir)]) == 0
    printed = capsys.readouterr().out
    assert hashlib.md5(b"a.jpg 2\nc.jpg 0\nd.jpg 2\ne.jpg 1\nh.jpg 0\n").hexdigest() in printed
    whole.write_text("a.jpg 7\n")
    assert main(["splits", "write-lists", "--whole-list", str(whole), "--out", str(out),
                 "--splits", str(split_dir)]) == 2
    assert "whole.txt:1: label 7 outside 0..5" in capsys.readouterr().err


def test_no_machine_paths_in_committed_files():
    for path in [*SPLIT_DIR.iterdir(), REPO / "mk" / "splits.mk"]:
        assert "/work/" not in path.read_text(), path


def test_released_whole_list_is_checked_against_released_md5(setup, monkeypatch, capsys):
    split_dir, whole, out = setup
    good = hashlib.md5(b"a.jpg 2\nc.jpg 0\nd.jpg 2\ne.jpg 1\nh.jpg 0\n").hexdigest()
    monkeypatch.setattr(filelists, "RELEASED_MD5", {md5(whole): {"half0A": good, "half0B": "0" * 32}})
    assert main(["splits", "write-lists", "--whole-list", str(whole), "--out", str(out / "x"),
                 "--only", "half0A", "--splits", str(split_dir)]) == 0
    assert f"{good}  {out / 'x' / 'half0A' / 'files.txt'}  (= released)" in capsys.readouterr().out
    with pytest.raises(TransferError, match=r"half0B/files.txt: md5 differs from the released list's 0{32}"):
        write_lists(whole, out / "y", ["half0B"], split_dir)


def test_further_random_halves_are_drawn_as_the_released_ones(tmp_path):
    """A plan's replicates need the halves of further seeds: written like the released script drew its four."""
    from transfer.data.classlists import write_halves
    split_dir = make_split_dir(tmp_path / "split", {}, num_classes=10)
    assert sorted(p.name for p in write_halves(split_dir, [4, 7])) == ["half4A.txt", "half4B.txt", "half7A.txt",
                                                                      "half7B.txt"]
    a, b = random_half(7, 10)
    assert load_split_dir(split_dir).classes("half7A") == a and load_split_dir(split_dir).classes("half7B") == b
    assert write_halves(split_dir, [4]) == []                       # already there: nothing rewritten
    (split_dir / "half4A.txt").write_text("0\n1\n2\n3\n4\n")
    with pytest.raises(TransferError, match=r"half4A.txt already exists with different content"):
        write_halves(split_dir, [4])
