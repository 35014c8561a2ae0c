"""The man-made / natural split of the ILSVRC2012 classes, derived from WordNet 3.0 (supplementary, section C).

For every noun synset x we count n(x), the ILSVRC classes at or below x along hypernym links (`@` hypernym and
`@i` instance hypernym). Classes under `artifact` are man-made, classes under `organism` natural, and the 68 left
over are placed by the paper's manual lists, copied below. The data files of Debian's `wordnet-base` are parsed
directly: the format is simple and fixed (wndb(5WN)), and a 15 MB file reads in well under a second.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import TransferError

ARTIFACT = "n00021939"   # artifact, artefact -> man-made (522 classes)
ORGANISM = "n00004475"   # organism, being    -> natural  (410 classes)
HYPERNYM_POINTERS = ("@", "@i")

# Debian's wordnet-base puts the database here; WNSEARCHDIR is WordNet's own override variable.
DEFAULT_DIRS = ("/usr/share/wordnet",)

# The 68 manual decisions of supplementary section C, verbatim: wnid and the class name as printed there (which
# is the class's synset_words.txt name). Both must agree with the class list, so a typo cannot slip a class in.
MANUAL_MANMADE = (
    ("n07697537", "hotdog, hot dog, red hot"),
    ("n07860988", "dough"),
    ("n07875152", "potpie"),
    ("n07583066", "guacamole"),
    ("n07892512", "red wine"),
    ("n07614500", "ice cream, icecream"),
    ("n09229709", "bubble"),
    ("n07831146", "carbonara"),
    ("n07565083", "menu"),
    ("n07871810", "meat loaf, meatloaf"),
    ("n07693725", "bagel, beigel"),
    ("n07920052", "espresso"),
    ("n07590611", "hot pot, hotpot"),
    ("n07873807", "pizza, pizza pie"),
    ("n07579787", "plate"),
    ("n06874185", "traffic light, traffic signal, stoplight"),
    ("n07836838", "chocolate sauce, chocolate syrup"),
    ("n15075141", "toilet tissue, toilet paper, bathroom tissue"),
    ("n07613480", "trifle"),
    ("n07880968", "burrito"),
    ("n06794110", "street sign"),
    ("n07711569", "mashed potato"),
    ("n07932039", "eggnog"),
    ("n07695742", "pretzel"),
    ("n07684084", "French loaf"),
    ("n07697313", "cheeseburger"),
    ("n07615774", "ice lolly, lolly, lollipop, popsicle"),
    ("n07584110", "consomme"),
    ("n07930864", "cup"),
)
MANUAL_NATURAL = (
    ("n13133613", "ear, spike, capitulum"),
    ("n07745940", "strawberry"),
    ("n07714571", "head cabbage"),
    ("n09428293", "seashore, coast, seacoast, sea-coast"),
    ("n07753113", "fig"),
    ("n07753275", "pineapple, ananas"),
    ("n07730033", "cardoon"),
    ("n07749582", "lemon"),
    ("n07742313", "Granny Smith"),
    ("n12768682", "buckeye, horse chestnut, conker"),
    ("n07734744", "mushroom"),
    ("n09246464", "cliff, drop, drop-off"),
    ("n11879895", "rapeseed"),
    ("n07718472", "cucumber, cuke"),
    ("n09468604", "valley, vale"),
    ("n07802026", "hay"),
    ("n09288635", "geyser"),
    ("n07720875", "bell pepper"),
    ("n07760859", "custard apple"),
    ("n07716358", "zucchini, courgette"),
    ("n09332890", "lakeside, lakeshore"),
    ("n09193705", "alp"),
    ("n09399592", "promontory, headland, head, foreland"),
    ("n07717410", "acorn squash"),
    ("n07717556", "butternut squash"),
    ("n07714990", "broccoli"),
    ("n09256479", "coral reef"),
    ("n09472597", "volcano"),
    ("n07747607", "orange"),
    ("n07716906", "spaghetti squash"),
    ("n12620546", "hip, rose hip, rosehip"),
    ("n07768694", "pomegranate"),
    ("n12267677", "acorn"),
    ("n12144580", "corn"),
    ("n07718747", "artichoke, globe artichoke"),
    ("n07753592", "banana"),
    ("n09421951", "sandbar, sand bar"),
    ("n07715103", "cauliflower"),
    ("n07754684", "jackfruit, jak, jack"),
)


@dataclass(frozen=True)
class NounGraph:
    """The WordNet noun synsets: their words and their hypernym parents, keyed by wnid ('n' + 8-digit offset)."""
    words: dict[str, str]              # wnid -> "entity" / "artifact, artefact" (underscores as spaces)
    parents: dict[str, tuple[str, ...]]                     # `@` and `@i` hypernyms
    hypernyms: dict[str, tuple[str, ...]] = field(default_factory=dict)   # `@` only (class hypernyms)
    lemmas: dict[str, str] = field(default_factory=dict)    # wnid -> first lemma as in data.noun ("Granny_Smith")


def find_wordnet_dir(path: str | os.PathLike | None = None) -> Path:
    """The directory holding WordNet 3.0's data.noun: `path`, else $WNSEARCHDIR, else Debian's location."""
    candidates = [path] if path else [os.environ.get("WNSEARCHDIR"), *DEFAULT_DIRS]
    for cand in candidates:
        if cand and (Path(cand) / "data.noun").is_file():
            return Path(cand)
    raise TransferError(f"WordNet 3.0 database (data.noun) not found in {', '.join(str(c) for c in candidates if c)}"
                        " (install Debian's wordnet-base, or pass --wordnet DIR)")


def load_nouns(wordnet_dir: str | os.PathLike | None = None) -> NounGraph:
    """Parse data.noun. A data line is: offset lex_filenum ss_type w_cnt(hex) {word lex_id} p_cnt {ptr} | gloss."""
    path = find_wordnet_dir(wordnet_dir) / "data.noun"
    words: dict[str, str] = {}
    parents: dict[str, tuple[str, ...]] = {}
    hypernyms: dict[str, tuple[str, ...]] = {}
    lemmas: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if line.startswith("  "):          # the licence header: lines start with two spaces
                continue
            fields = line.split(" | ", 1)[0].split()
            try:
                wnid = "n" + fields[0]
                w_cnt = int(fields[3], 16)
                names = [w.replace("_", " ") for w in fields[4:4 + 2 * w_cnt:2]]
                p = 4 + 2 * w_cnt
                p_cnt = int(fields[p])
                ptrs = [fields[p + 1 + 4 * i: p + 5 + 4 * i] for i in range(p_cnt)]
            except (IndexError, ValueError) as exc:
                raise TransferError(f"{path}:{lineno}: not a WordNet data line ({exc})") from None
            words[wnid] = ", ".join(names)
            lemmas[wnid] = fields[4]
            parents[wnid] = tuple("n" + off for sym, off, pos, _ in ptrs
                                  if sym in HYPERNYM_POINTERS and pos == "n")
            hypernyms[wnid] = tuple("n" + off for sym, off, pos, _ in ptrs if sym == "@" and pos == "n")
    return NounGraph(words, parents, hypernyms, lemmas)


def synset_names(graph: NounGraph, wordnet_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """NLTK's name of every noun synset: first lemma lowercased, '.n.', two-digit sense number ('dog.n.01').

    The sense number is the synset's position in its lemma's line of index.noun (lemma synset_cnt p_cnt
    {ptr_symbol} sense_cnt tagsense_cnt {synset_offset}, offsets in sense order), as NLTK numbers them."""
    path = find_wordnet_dir(wordnet_dir) / "index.noun"
    senses: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if line.startswith("  "):
                continue
            fields = line.split()
            try:
                p_cnt = int(fields[3])
                offsets = fields[6 + p_cnt:]
                if len(offsets) != int(fields[2]):
                    raise ValueError(f"{len(offsets)} offsets, synset_cnt {fields[2]}")
            except (IndexError, ValueError) as exc:
                raise TransferError(f"{path}:{lineno}: not a WordNet index line ({exc})") from None
            senses[fields[0]] = offsets
    names: dict[str, str] = {}
    for wnid, lemma in graph.lemmas.items():
        key = lemma.lower()
        try:
            sense = senses[key].index(wnid[1:]) + 1
        except (KeyError, ValueError):
            raise TransferError(f"{path}: synset {wnid} ({graph.words[wnid]}) is not among the senses of "
                                f"'{key}'") from None
        names[wnid] = f"{key}.n.{sense:02d}"
    return names


def ancestors(graph: NounGraph, wnid: str) -> set[str]:
    """wnid and every synset above it (WordNet's noun graph is a DAG: a synset may have several parents)."""
    seen = {wnid}
    todo = [wnid]
    while todo:
        for parent in graph.parents.get(todo.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def class_counts(graph: NounGraph, class_wnids: list[str]) -> dict[str, int]:
    """n(x) for every synset x: how many of the classes lie at or below x."""
    counts: dict[str, int] = {}
    for wnid in class_wnids:
        if wnid not in graph.words:
            raise TransferError(f"class {wnid} is not a WordNet 3.0 noun synset")
        for anc in ancestors(graph, wnid):
            counts[anc] = counts.get(anc, 0) + 1
    return counts


def largest_counts(graph: NounGraph, class_wnids: list[str], top: int = 20) -> list[tuple[int, str, str]]:
    """The supplementary's table: (n, wnid, words) of the `top` synsets with most classes below them.

    Ties are listed by wnid; the paper's tie order is not defined by its text (and does not matter)."""
    counts = class_counts(graph, class_wnids)
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [(n, wnid, graph.words[wnid]) for wnid, n in rows]


def natman_split(graph: NounGraph, class_wnids: list[str], class_names: list[str]) -> tuple[list[int], list[int]]:
    """(manmade, natural): ascending class indices into class_wnids, 551 and 449 for ILSVRC2012.

    class_names are the synset_words.txt names, used only to check the manual lists resolve as printed."""
    index = {wnid: i for i, wnid in enumerate(class_wnids)}
    if len(index) != len(class_wnids):
        raise TransferError("the class list repeats a wnid")
    category: dict[int, str] = {}
    for wnid, i in index.items():
        if wnid not in graph.words:
            raise TransferError(f"class {i} ({wnid}) is not a WordNet 3.0 noun synset")
        up = ancestors(graph, wnid)
        if ARTIFACT in up and ORGANISM in up:
            raise TransferError(f"class {i} ({wnid}) is under both artifact and organism")
        if ARTIFACT in up:
            category[i] = "manmade"
        elif ORGANISM in up:
            category[i] = "natural"
    for label, manual in (("manmade", MANUAL_MANMADE), ("natural", MANUAL_NATURAL)):
        for wnid, name in manual:
            hits = [i for i, (w, n) in enumerate(zip(class_wnids, class_names)) if w == wnid or n == name]
            if len(hits) != 1 or class_wnids[hits[0]] != wnid or class_names[hits[0]] != name:
                raise TransferError(f"manual {label} class {wnid} '{name}' does not match exactly one class "
                                    f"(matches {[(i, class_wnids[i], class_names[i]) for i in hits]})")
            if hits[0] in category:
                raise TransferError(f"manual {label} class {wnid} '{name}' is already {category[hits[0]]} "
                                    "by the WordNet hierarchy")
            category[hits[0]] = label
    missing = [f"{i} {class_wnids[i]}" for i in range(len(class_wnids)) if i not in category]
    if missing:
        raise TransferError(f"{len(missing)} classes are neither man-made nor natural: {', '.join(missing[:10])}")
    manmade = [i for i in sorted(category) if category[i] == "manmade"]
    natural = [i for i in sorted(category) if category[i] == "natural"]
    return manmade, natural
