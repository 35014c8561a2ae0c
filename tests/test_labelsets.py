"""Label sets (WordNet 3.0 and the synthetic class tree), data budgets, and LMDBs relabelled by a label set."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import yaml
import pytest
from PIL import Image

from transfer import REPO, cli
from transfer.data import budgets, classlists as splits, filelists, labelsets, synthetic
from transfer.data.build import build
from transfer.data.derive import relabel
from transfer.data.verify import verify
from transfer.plan.datasets import Kind, class_budget_set, sample_set
from transfer.plan.load import PLAN_DIR, expand
from transfer.core.errors import TransferError
from transfer.data.lmdb_store import PROGRESS_KEY, iter_items, open_read, read_manifest

from test_datasets import _KILLER  # noqa: E402

SHARED = REPO.parent / "shared"
BOTTOMUP = [999, 977, 918, 877, 820, 753, 694, 596, 486, 345, 206, 79, 36, 17, 9, 5, 2, 1]   # depth 17..0

try:
    WORDNET, WHY = labelsets.WordNetHierarchy(), ""
except TransferError as exc:      # no database: the WordNet tests cannot run (TRANSFER_TEST_REQUIRE=wordnet fails)
    WORDNET, WHY = None, str(exc)
needs_wordnet = pytest.mark.skipif(WORDNET is None, reason=f"WordNet 3.0 missing: {WHY}")


@pytest.fixture(scope="module")
def ilsvrc():
    split = splits.load_split_dir()
    return split, labelsets.label_sets(WORDNET, list(split.wnids))


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------------------------- WordNet

@needs_wordnet
def test_nltk_names_order_the_hypernyms():
    assert WORDNET.name("n02084071") == "dog.n.01" and WORDNET.name(labelsets.ENTITY) == "entity.n.01"
    assert WORDNET.name("n07679356") == "bread.n.01" and WORDNET.name("n07566340") == "foodstuff.n.02"
    # minivan's `@` hypernyms are passenger_van.n.01 then car.n.01 in data.noun; car.n.01 sorts first
    assert WORDNET.graph.hypernyms["n03770679"] == ("n03896419", "n02958343")
    assert WORDNET.first_parent("n03770679") == "n02958343"
    # `@i` links are not hypernyms here (the man-made/natural split counts them)
    instance = next(w for w, p in WORDNET.graph.parents.items() if p and not WORDNET.graph.hypernyms[w])
    assert WORDNET.first_parent(instance) is None


@needs_wordnet
def test_every_label_set_size(ilsvrc):
    split, sets = ilsvrc
    assert [int(n.split("-")[1]) for n in sets if n.startswith("bottomup-")] == BOTTOMUP
    assert [sets[f"bottomup-{k}"].num_labels for k in BOTTOMUP] == BOTTOMUP
    assert [n for n in sets if n.startswith("topdown-")] == ["topdown-127", "topdown-10", "topdown-2"]
    for name in [f"bottomup-{k}" for k in BOTTOMUP] + ["topdown-127", "topdown-10", "topdown-2"]:
        ls = sets[name]
        assert len(ls.map) == 1000 and sum(len(g.members) for g in ls.groups) == 1000
        assert [g.label for g in ls.groups] == list(range(ls.num_labels))
    assert sum(len(g.members) == 1 for g in sets["topdown-127"].groups) == 65
    assert (len(sets["pascal-removed"].map), sets["pascal-removed"].num_labels) == (771, 771)
    assert (len(sets["minimal-A"].map), len(sets["minimal-B"].map)) == (522, 478)
    assert (len(sets["random522-A"].map), len(sets["random522-B"].map)) == (522, 478)


@needs_wordnet
def test_bottomup_cuts_first_hypernym_chains(ilsvrc):
    split, sets = ilsvrc
    deepest = max(labelsets.depths(WORDNET, list(split.wnids)).values())
    assert deepest == 18 and labelsets.chain(WORDNET, "n02084071")[-1] == labelsets.ENTITY
    for depth, k in zip(range(17, -1, -1), BOTTOMUP):
        for c, group in sets[f"bottomup-{k}"].map.items():
            top_down = labelsets.chain(WORDNET, c)[::-1]
            assert group == (top_down[depth] if len(top_down) > depth + 1 else c)
    # bottomup-486: a deep class joins its depth-9 ancestor; coarser sets only merge groups of finer ones
    fine, coarse = sets["bottomup-486"].map, sets["bottomup-79"].map
    assert all(len({coarse[c] for c in fine if fine[c] == g}) == 1 for g in set(fine.values()))


@needs_wordnet
def test_topdown_groups_are_topmost_parents(ilsvrc):
    split, sets = ilsvrc
    parents = {WORDNET.first_parent(c) for c in split.wnids}
    for c, group in sets["topdown-127"].map.items():
        on_chain = [x for x in labelsets.chain(WORDNET, c) if x in parents]
        assert group == on_chain[-1]
    assert len(set(sets["topdown-2"].map.values())) == 2
    ten = sets["topdown-10"].map
    assert all(len({ten[c] for c in ten if sets["topdown-127"].map[c] == g}) == 1
               for g in set(sets["topdown-127"].map.values()))


@needs_wordnet
def test_pascal_removed_drops_every_class_under_a_pascal_synset(ilsvrc):
    split, sets = ilsvrc
    kept = set(sets["pascal-removed"].map)
    pascal = {w for _, w in labelsets.PASCAL_SYNSETS}
    for c in split.wnids:
        assert (c in kept) == (not WORDNET.ancestors(c) & pascal), c
    assert "n03770679" not in kept and "n02110185" not in kept      # minivan (a car), Siberian husky (a dog)
    assert list(sets["pascal-removed"].map) == [c for c in split.wnids if c in kept]   # class-list order


def test_pascal_synsets_are_the_shared_list():
    path = SHARED / "data" / "huh2016" / "pascal_wnids.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present (the reference lists live outside the repo)")
    rows = [tuple(line.split()) for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert rows == list(labelsets.PASCAL_SYNSETS)


@needs_wordnet
def test_minimal_a_is_the_artifact_part_of_the_manmade_split(ilsvrc):
    split, sets = ilsvrc
    from transfer.data import wordnet
    manual = {w for w, _ in wordnet.MANUAL_MANMADE}
    manmade = [split.wnids[i] for i in split.classes("manmade")]
    assert list(sets["minimal-A"].map) == [c for c in manmade if c not in manual]
    assert set(sets["minimal-B"].map) == set(split.wnids) - set(sets["minimal-A"].map)
    # "no shared ancestor to depth 4": artifact is at depth 4 and no class of B has it on its chain
    assert labelsets.chain(WORDNET, labelsets.ARTIFACT)[::-1].index(labelsets.ARTIFACT) == 4
    assert all(labelsets.ARTIFACT not in labelsets.chain(WORDNET, c) for c in sets["minimal-B"].map)


@needs_wordnet
def test_random_split_is_seeded_and_not_the_minimal_one(ilsvrc):
    split, sets = ilsvrc
    a, b = set(sets["random522-A"].map), set(sets["random522-B"].map)
    assert not a & b and a | b == set(split.wnids)
    assert labelsets.random_split(list(split.wnids), 522) == (list(sets["random522-A"].map),
                                                              list(sets["random522-B"].map))
    assert labelsets.random_split(list(split.wnids), 522, seed=1)[0] != list(sets["random522-A"].map)
    assert len(a & set(sets["minimal-A"].map)) < 400     # a random draw mixes man-made and natural


@pytest.mark.slow   # every label set of WordNet's 1000 classes
@needs_wordnet
def test_cli_show_json(capsys):
    code, out, _ = run_cli(capsys, "labels", "show", "topdown-127", "--json")
    assert code == 0
    doc = json.loads(out)
    split = splits.load_split_dir()
    assert set(doc["map"]) == set(split.wnids) and doc["num_labels"] == 127
    groups = doc["groups"]
    assert [g["label"] for g in groups] == list(range(127)) and sum(g["count"] for g in groups) == 1000
    counts = Counter(doc["map"].values())
    assert all(counts[g["wnid"]] == g["count"] and g["words"] for g in groups)
    mammal = next(g for g in groups if g["wnid"] == "n01861778")
    assert mammal["words"] == "mammal, mammalian" and doc["map"]["n02110185"] == "n01861778"

    code, out, _ = run_cli(capsys, "labels", "show", "pascal-removed", "--json")
    assert len(json.loads(out)["map"]) == 771 and "n02110185" not in json.loads(out)["map"]
    code, _, err = run_cli(capsys, "labels", "show", "bottomup-500")
    assert code == 2 and "no label set 'bottomup-500'" in err and "bottomup-486" in err


# ---------------------------------------------------------------------------------------------- the rules

TREE = {"root": None, "A": "root", "B": "root", "A1": "A", "c0": "A1", "c1": "A1", "c2": "A", "c3": "B"}


def test_rules_on_a_small_tree():
    h = labelsets.TreeHierarchy(TREE, {n: n.upper() for n in TREE}, split_node="A",
                                excluded={"a1-removed": ("A1",)})
    classes = ["c3", "c0", "c2", "c1"]
    sets = labelsets.label_sets(h, classes)
    assert list(sets) == ["bottomup-3", "bottomup-2", "bottomup-1", "topdown-2", "a1-removed", "minimal-A",
                          "minimal-B", "random3-A", "random3-B"]
    assert sets["bottomup-3"].map == {"c3": "c3", "c0": "A1", "c2": "c2", "c1": "A1"}
    assert [(g.label, g.wnid, g.words, g.members) for g in sets["bottomup-3"].groups] == [
        (0, "c3", "C3", ("c3",)), (1, "A1", "A1", ("c0", "c1")), (2, "c2", "C2", ("c2",))]
    assert sets["bottomup-2"].map == {"c3": "B", "c0": "A", "c2": "A", "c1": "A"}
    # top-down: the labels' parents are A1, A, B; each class takes the topmost on its chain (A, not A1)
    assert sets["topdown-2"].map == sets["bottomup-2"].map
    assert sets["a1-removed"].map == {"c3": "c3", "c2": "c2"}
    assert list(sets["minimal-A"].map) == ["c0", "c2", "c1"] and list(sets["minimal-B"].map) == ["c3"]
    assert labelsets.class_label_map(sets["bottomup-3"], classes) == {0: 0, 1: 1, 2: 2, 3: 1}
    assert labelsets.class_label_map(sets["a1-removed"], classes) == {0: 0, 2: 1}


def test_a_chain_that_misses_the_root_is_named():
    h = labelsets.TreeHierarchy({"root": None, "x": "root", "c": "y", "y": "x"}, {}, split_node="x")
    assert labelsets.chain(h, "c") == ["c", "y", "x", "root"]
    with pytest.raises(TransferError, match="z is not a node of the class tree"):
        labelsets.label_sets(h, ["c", "z"])


# ---------------------------------------------------------------------------------------------- synthetic

@pytest.fixture(scope="module")
def syn(tmp_path_factory) -> Path:
    return synthetic.make_synthetic(tmp_path_factory.mktemp("syn") / "d", num_classes=12, train_per_class=4,
                                    val_per_class=1, size=16, seed=0)


def test_synthetic_class_tree(syn):
    split = splits.load_split_dir(syn)
    h = labelsets.hierarchy_for(split)
    assert isinstance(h, labelsets.TreeHierarchy)
    recipes = synthetic.recipes(12, 0)
    for k, c in enumerate(split.wnids):
        sup = "manmade" if recipes[k].manmade else "natural"
        assert labelsets.chain(h, c) == [c, f"kind-{recipes[k].parts[0].kind}", sup, "root"]
    kinds = {f"kind-{r.parts[0].kind}" for r in recipes}
    sets = labelsets.label_sets(h, list(split.wnids))
    assert [n for n in sets if n.startswith(("bottomup", "topdown"))] == [
        f"bottomup-{len(kinds)}", "bottomup-2", "bottomup-1", f"topdown-{len(kinds)}", "topdown-2"]
    assert set(sets[f"bottomup-{len(kinds)}"].map.values()) == kinds
    manmade = [split.wnids[i] for i in splits.parse_indices(syn / "manmade.txt")]
    assert list(sets["minimal-A"].map) == manmade and len(manmade) == 6
    assert sets["bottomup-2"].map == {c: ("manmade" if c in manmade else "natural") for c in split.wnids}


def test_synthetic_label_sets_on_the_command_line(syn, capsys):
    code, out, _ = run_cli(capsys, "labels", "list", "--splits", str(syn))
    assert code == 0 and "bottomup-2" in out and "minimal-A" in out and "random6-B" in out
    code, out, _ = run_cli(capsys, "labels", "show", "bottomup-2", "--splits", str(syn), "--json")
    doc = json.loads(out)
    assert [(g["wnid"], g["count"]) for g in doc["groups"]] == [("manmade", 6), ("natural", 6)]
    assert doc["groups"][0]["words"] == "man-made" and len(doc["map"]) == 12


# ---------------------------------------------------------------------------------------------- budgets

def _whole(counts: list[int]) -> tuple[list[str], list[int]]:
    """Lines of len(counts) classes, interleaved as ILSVRC's shuffled lists are."""
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    labels = [labels[i] for i in np.random.default_rng(9).permutation(len(labels))]
    return [f"img{i:03d}.JPEG" for i in range(len(labels))], labels


def _rows(text: str) -> list[tuple[str, int]]:
    return [(p, int(lb)) for p, lb in (line.split() for line in text.splitlines())]


def _cut(spec, paths, labels, num_classes, seed=0) -> dict[str, str]:
    """The files.txt (and idxmap.txt) of a budget, through the one function that cuts every data set."""
    split = labelsets.SplitSet(Path("."), tuple(f"s{c}" for c in range(num_classes)), ("",) * num_classes)
    counts = [labels.count(c) for c in range(num_classes)]
    if seed:
        keep, classes = budgets.budget_lines(spec, labels, num_classes, seed)
        return {"files.txt": "".join(f"{paths[i]} {labels[i]}\n" for i in keep)}
    return filelists.list_files(spec, split, Path("whole.txt"), paths, labels, counts)


def test_images_per_class_is_a_seeded_nested_sample():
    paths, labels = _whole([10, 6, 4])
    small = _rows(_cut(sample_set(2), paths, labels, 3)["files.txt"])
    five = _cut(sample_set(5), paths, labels, 3)
    rows = _rows(five["files.txt"])
    assert "idxmap.txt" not in five
    assert Counter(lb for _, lb in rows) == {0: 5, 1: 5, 2: 4}            # a class with fewer keeps all
    assert all(labels[paths.index(p)] == lb for p, lb in rows)          # labels unchanged
    assert [paths.index(p) for p, _ in rows] == sorted(paths.index(p) for p, _ in rows)   # list order
    assert set(small) < set(rows) and len(small) == 6
    again = _cut(sample_set(5), paths, labels, 3)["files.txt"]
    other = _cut(sample_set(5), paths, labels, 3, seed=1)["files.txt"]
    assert again == five["files.txt"] and other != again
    first5 = [p for p, lb in zip(paths, labels) if lb == 0][:5]         # not the first N, as reduced sets are
    assert [p for p, lb in rows if lb == 0] != first5


def test_budgets_two_ways(tmp_path):
    paths, labels = _whole([8, 8, 8, 8])
    # 12 images over every class: a plan's `images: 12` on a 4-class set is 3 a class
    plan = _budget_plan(tmp_path, {"fewer": {"images": 12}, "classes2": {"images": 12, "classes": 2}}, classes=4)
    assert plan.datasets["fewer"].kind == Kind.SAMPLE and plan.datasets["fewer"].per_class == 3
    fewer_images = _rows(_cut(plan.datasets["fewer"], paths, labels, 4)["files.txt"])
    assert Counter(lb for _, lb in fewer_images) == {0: 3, 1: 3, 2: 3, 3: 3}
    out = _cut(plan.datasets["classes2"], paths, labels, 4)
    rows = _rows(out["files.txt"])
    kept = budgets.random_classes(4, 2)
    assert len(rows) == 12 and Counter(lb for _, lb in rows) == {0: 6, 1: 6}
    assert out["idxmap.txt"] == filelists.IDXMAP_HEADER + f"{kept[0]} 0\n{kept[1]} 1\n"
    assert all(kept[lb] == labels[paths.index(p)] for p, lb in rows)
    assert set(budgets.random_classes(4, 1)) < set(kept) and budgets.random_classes(1000, 500) == sorted(
        budgets.random_classes(1000, 500))
    with pytest.raises(TransferError, match=r"budgets.fewer.images: 3 images are fewer than one per class of 4"):
        _budget_plan(tmp_path, {"fewer": {"images": 3}}, classes=4)
    with pytest.raises(TransferError, match=r"budgets.many.classes: 5 is out of range"):
        _budget_plan(tmp_path, {"many": {"images": 5000, "classes": 5}}, classes=4)
    with pytest.raises(TransferError, match=r"budget5k-classes: 5 classes of 1000 images, but the set has 4"):
        _cut(class_budget_set(5000, 5), paths, labels, 4)


def _budget_plan(tmp_path: Path, budget_block: dict, classes: int):
    config = yaml.safe_load((PLAN_DIR / "huh-small.yaml").read_text())
    config["synthetic"]["classes"] = classes
    config["datasets"] = {"all": classes}
    config["experiments"]["huh2016"] = {"original": "all", "budgets": budget_block}
    config.pop("targets")
    return expand(config, tmp_path / "p.yaml")


def test_budget_lists_through_write_lists(tmp_path):
    split = tmp_path / "split"
    split.mkdir()
    (split / "synsets.txt").write_text("".join(f"s{c:04d}\n" for c in range(3)))
    paths, labels = _whole([5, 5, 5])
    whole = tmp_path / "whole.txt"
    whole.write_text("".join(f"{p} {lb}\n" for p, lb in zip(paths, labels)))
    filelists.write_lists(whole, tmp_path / "lists", [sample_set(2), class_budget_set(10, 2)], split)
    assert len(_rows((tmp_path / "lists" / "images0002" / "files.txt").read_text())) == 6
    two = _rows((tmp_path / "lists" / "budget10-classes" / "files.txt").read_text())
    assert len(two) == 10 and {lb for _, lb in two} == {0, 1}
    with pytest.raises(TransferError, match=r"budget20-classes: 4 classes of 5 images, but the set has 3"):
        filelists.write_lists(whole, tmp_path / "lists2", [class_budget_set(20, 4)], split)


# ---------------------------------------------------------------------------------------------- relabel

@pytest.fixture(scope="module")
def whole_db(pb2, tmp_path_factory) -> Path:
    """A shuffled whole database of 24 real JPEGs in 4 classes."""
    tmp = tmp_path_factory.mktemp("whole")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(24):
        (tmp / "img").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp / "img" / f"{i}.JPEG")
        lines.append(f"img/{i}.JPEG {i % 4}\n")
    (tmp / "files.txt").write_text("".join(lines))
    return build(str(tmp / "files.txt"), str(tmp), str(tmp / "whole"), size=12, shuffle=True, jobs=1)


def _datums(pb2, db: Path) -> dict[bytes, tuple[int, bytes]]:
    with open_read(db) as env:
        items = [(bytes(k), pb2.Datum.FromString(v)) for k, v in iter_items(env) if k != PROGRESS_KEY]
    return {k: (d.label, d.data) for k, d in items}


def test_relabel_keeps_keys_and_pixels(pb2, whole_db, tmp_path, capsys):
    mapping = {3: 0, 1: 1, 2: 1}             # class 0 dropped, classes 1 and 2 merged
    out = relabel(str(whole_db), mapping, str(tmp_path / "r"), name="test", block=5)
    whole, derived = _datums(pb2, whole_db), _datums(pb2, out)
    assert list(derived) == [k for k in whole if whole[k][0] in mapping]      # same keys, same order
    for key, (label, data) in derived.items():
        assert label == mapping[whole[key][0]] and data == whole[key][1]
    m = read_manifest(out)
    assert m["count"] == 18 and m["labels"] == {"0": 6, "1": 12} and m["label_map"] == {"1": 1, "2": 1, "3": 0}
    assert verify(str(out)) == [] and not Path(str(out) + ".partial").exists()
    assert relabel(str(whole_db), mapping, str(out)) == out and "up to date" in capsys.readouterr().err
    with pytest.raises(TransferError, match="not built from this list with these options"):
        relabel(str(whole_db), {0: 0}, str(out))
    with pytest.raises(TransferError, match=r"labels \[7\] are not in"):
        relabel(str(whole_db), {7: 0}, str(tmp_path / "bad"))


def test_relabel_resumes_after_kill(pb2, whole_db, tmp_path, capsys):
    out = tmp_path / "r"
    # the crash-mid-commit child of the data tests, running relabel instead of build
    code = _KILLER.replace("from transfer.data.build import build", "from transfer.data.derive import relabel").replace(
        "build(*sys.argv[2:5], **ast.literal_eval(sys.argv[5]))",
        f"relabel({str(whole_db)!r}, {{0: 0, 1: 1}}, {str(out)!r}, block=6)")
    killed = subprocess.run([sys.executable, "-c", code, "8"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert killed.returncode == -signal.SIGKILL and not out.exists()
    mapfile = tmp_path / "map.txt"
    mapfile.write_text("# old new\n0 0\n1 1\n")
    code, _, err = run_cli(capsys, "data", "relabel", "--from", str(whole_db), "--map", str(mapfile),
                           "--out", str(out), "--commit-every", "6")
    assert code == 0 and "resuming" in err
    ref = relabel(str(whole_db), {0: 0, 1: 1}, str(tmp_path / "ref"))
    assert _datums(pb2, out) == _datums(pb2, ref)
    mapfile.write_text("0 0\n0 1\n")
    code, _, err = run_cli(capsys, "data", "relabel", "--from", str(whole_db), "--map", str(mapfile),
                           "--out", str(tmp_path / "x"))
    assert code == 2 and "map.txt:2: label 0 is mapped twice" in err


def test_relabel_by_a_synthetic_label_set(pb2, syn, tmp_path, capsys):
    whole = build(str(syn / "train.txt"), str(syn), str(tmp_path / "whole"), size=16, jobs=1)
    code, out, _ = run_cli(capsys, "data", "relabel", "--from", str(whole), "--labels", "minimal-B",
                           "--splits", str(syn), "--out", str(tmp_path / "b"))
    assert code == 0
    split = splits.load_split_dir(syn)
    _, sets = labelsets.load_label_sets(syn)
    expected = labelsets.class_label_map(sets["minimal-B"], list(split.wnids))
    before, after = _datums(pb2, whole), _datums(pb2, tmp_path / "b")
    assert len(after) == 4 * 6 and all(lb == expected[before[k][0]] for k, (lb, _) in after.items())
    assert read_manifest(tmp_path / "b")["label_set"] == "minimal-B"
