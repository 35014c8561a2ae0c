"""The man-made/natural derivation from WordNet 3.0 reproduces supplementary section C and the released lists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from transfer import REPO
from transfer.data import wordnet
from transfer.core.errors import TransferError
from transfer.data.classlists import load_split_dir

SHARED = REPO.parent / "shared"

# Supplementary section C, the 20 largest n_i, verbatim (a test below checks it against the paper's file too).
TABLE = """\
1000 n00001740: entity
997  n00001930: physical entity
958  n00002684: object, physical object
949  n00003553: whole, unit
522  n00021939: artifact, artefact
410  n00004475: organism, being
410  n00004258: living thing, animate thing
398  n00015388: animal, animate being, beast, brute, creature, fauna
358  n03575240: instrumentality, instrumentation
337  n01471682: vertebrate, craniate
337  n01466257: chordate
218  n01861778: mammal, mammalian
212  n01886756: placental, placental mammal, eutherian, eutherian mammal
158  n02075296: carnivore
130  n03183080: device
130  n02083346: canine, canid
123  n01317541: domestic animal, domesticated animal
118  n02084071: dog, domestic dog, Canis familiaris
100  n03094503: container
90   n03122748: covering
"""
ROW = re.compile(r"^(\d+)\s+(n\d{8}): (.+?)\s*$", re.M)


def parse_table(text: str) -> list[tuple[int, str, str]]:
    # The paper lists ties in no stated order; compare with ties ordered by wnid, as largest_counts does.
    return sorted(((int(n), w, words) for n, w, words in ROW.findall(text)), key=lambda r: (-r[0], r[1]))


try:
    GRAPH, WHY = wordnet.load_nouns(), ""
except TransferError as exc:      # no database: the derivation tests cannot run (the parser tests still do)
    GRAPH, WHY = None, str(exc)
needs_wordnet = pytest.mark.skipif(GRAPH is None, reason=f"WordNet 3.0 missing: {WHY}")


@pytest.fixture(scope="module")
def split():
    return load_split_dir()


@needs_wordnet
def test_largest_counts_are_the_supplementary_table(split):
    rows = wordnet.largest_counts(GRAPH, list(split.wnids), top=21)
    assert rows[:20] == parse_table(TABLE)
    assert rows[20][0] < 90      # the 20th is not tied with the 21st: the top 20 is well defined


def test_embedded_table_is_the_papers():
    paper = SHARED / "papers" / "how-transferable-2014-supplementary.md"
    if not paper.is_file():
        pytest.skip(f"{paper} not present (the paper is not part of the repo)")
    section = paper.read_text().split("## C Man-made vs. Natural Split", 1)[1].split("```")[1]
    assert parse_table(section) == parse_table(TABLE)
    assert len(parse_table(TABLE)) == 20


@needs_wordnet
def test_artifact_organism_and_manual_lists(split):
    counts = wordnet.class_counts(GRAPH, list(split.wnids))
    assert counts[wordnet.ARTIFACT] == 522 and counts[wordnet.ORGANISM] == 410
    manual = [w for w, _ in wordnet.MANUAL_MANMADE + wordnet.MANUAL_NATURAL]
    assert (len(wordnet.MANUAL_MANMADE), len(wordnet.MANUAL_NATURAL)) == (29, 39)
    assert len(set(manual)) == 68
    for wnid in manual:          # each manual class is one the hierarchy leaves unassigned
        up = wordnet.ancestors(GRAPH, wnid)
        assert wordnet.ARTIFACT not in up and wordnet.ORGANISM not in up, wnid


@needs_wordnet
def test_derivation_equals_committed_lists(split):
    manmade, natural = wordnet.natman_split(GRAPH, list(split.wnids), list(split.words))
    assert (len(manmade), len(natural)) == (551, 449)
    assert split.classes("manmade") == manmade
    assert split.classes("natural") == natural


@needs_wordnet
def test_derivation_equals_shared_lists(split):
    expected = SHARED / "data" / "ilsvrc12"
    if not (expected / "manmade_classes.txt").is_file():
        pytest.skip(f"{expected} not present (reference lists live outside the repo)")
    manmade, natural = wordnet.natman_split(GRAPH, list(split.wnids), list(split.words))
    assert (expected / "manmade_classes.txt").read_text() == "".join(f"{i}\n" for i in manmade)
    assert (expected / "natural_classes.txt").read_text() == "".join(f"{i}\n" for i in natural)


@needs_wordnet
def test_manual_name_must_match_its_wnid(split):
    words = list(split.words)
    words[split.wnids.index("n07930864")] = "cup, mug"        # the printed name 'cup' no longer matches
    with pytest.raises(TransferError, match=r"manual manmade class n07930864 'cup' does not match exactly one"):
        wordnet.natman_split(GRAPH, list(split.wnids), words)


# A tiny WordNet in the real file format tests the parser without the database.
TINY = """\
  1 This software and database is being provided ...
00000001 03 n 01 entity 0 000 | root
00000002 03 n 02 artifact 0 artefact 0 001 @ 00000001 n 0000 | made
00000003 03 n 01 organism 0 001 @ 00000001 n 0000 | alive
00000004 06 n 01 thing_made 0 002 @ 00000002 n 0000 ~ 00000005 n 0000 | a class
00000005 06 n 01 Fido 0 002 @i 00000003 n 0000 @ 00000004 n 0000 | two parents, one instance link
00000006 06 n 01 rock 0 002 @ 00000001 n 0000 + 01234567 v 0101 | no category
"""


def tiny_graph(tmp_path: Path) -> wordnet.NounGraph:
    (tmp_path / "data.noun").write_text(TINY)
    return wordnet.load_nouns(tmp_path)


def test_parser_reads_words_and_hypernyms(tmp_path):
    g = tiny_graph(tmp_path)
    assert g.words["n00000002"] == "artifact, artefact"
    assert g.words["n00000004"] == "thing made"
    assert g.parents["n00000005"] == ("n00000003", "n00000004")   # `@i` counts, `~` (hyponym) does not
    assert g.parents["n00000006"] == ("n00000001",)               # verb pointers are ignored
    assert wordnet.ancestors(g, "n00000005") == {f"n0000000{i}" for i in (1, 2, 3, 4, 5)}
    counts = wordnet.class_counts(g, ["n00000004", "n00000005", "n00000006"])
    assert counts == {"n00000001": 3, "n00000002": 2, "n00000003": 1, "n00000004": 2, "n00000005": 1,
                      "n00000006": 1}


def test_class_under_both_categories_is_an_error(tmp_path, monkeypatch):
    g = tiny_graph(tmp_path)
    monkeypatch.setattr(wordnet, "ARTIFACT", "n00000002")
    monkeypatch.setattr(wordnet, "ORGANISM", "n00000003")
    with pytest.raises(TransferError, match=r"class 0 \(n00000005\) is under both artifact and organism"):
        wordnet.natman_split(g, ["n00000005"], ["Fido"])


def test_bad_data_line_names_file_and_line(tmp_path):
    (tmp_path / "data.noun").write_text(TINY + "00000007 03 n zz broken\n")
    with pytest.raises(TransferError, match=r"data.noun:8: not a WordNet data line"):
        wordnet.load_nouns(tmp_path)


def test_missing_wordnet_says_what_to_install(tmp_path):
    with pytest.raises(TransferError, match="wordnet-base"):
        wordnet.load_nouns(tmp_path)
