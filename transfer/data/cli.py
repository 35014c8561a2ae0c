"""The `transfer data` commands: build, derive, relabel, verify, mean (thin: the work is in the modules).

    transfer data build   --list FILES --root DIR --out DB    decode + warp in parallel, resumable (build.py)
    transfer data derive  --from WHOLE_DB --list SUBSET --out DB   relabel Datums, no JPEG decoding (derive.py)
    transfer data relabel --from WHOLE_DB --labels NAME --out DB   a label set of the whole set (derive.py)
    transfer data verify  DB                                  re-read and check against manifest.json (verify.py)
    transfer data mean    DB --out mean.binaryproto           per-pixel mean, one streaming pass (means.py)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import labelsets
from ..core import argtypes
from ..core.errors import Exit, TransferError
from .build import build
from .dbwrite import DEFAULT_BLOCK, log
from .derive import derive, read_label_map, relabel
from .imagesize import DEFAULT_MAX_PIXELS
from .lmdb_store import read_manifest
from .means import compute_mean
from .verify import check_label_range, verify



def _cmd_build(a: argparse.Namespace) -> int:
    build(a.list, a.root, a.out, size=a.size, shuffle=a.shuffle, seed=a.seed, jobs=a.jobs,
          skip_bad=a.skip_bad, block=a.commit_every, num_classes=a.classes, max_pixels=a.max_pixels,
          allow_outside_root=a.allow_outside_root)
    return 0


def _cmd_derive(a: argparse.Namespace) -> int:
    derive(a.source, a.list, a.out, shuffle=a.shuffle, seed=a.seed, skip_bad=a.skip_bad, block=a.commit_every,
           num_classes=a.classes)
    return 0


def _cmd_relabel(a: argparse.Namespace) -> int:
    if (a.labels is None) == (a.map is None):
        raise TransferError("give one of --labels NAME (a label set) or --map FILE ('old new' a line)")
    if a.labels is not None:
        split, sets = labelsets.load_label_sets(a.splits, a.wordnet)
        label_map = labelsets.class_label_map(labelsets.get_label_set(sets, a.labels), list(split.wnids))
    else:
        label_map = read_label_map(a.map)
    out = relabel(a.source, label_map, a.out, name=a.labels, block=a.commit_every)
    m = read_manifest(out)
    print(f"{out}: {m['count']} Datums, {m['num_labels']} labels")
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    if a.classes is not None:
        check_label_range(a.db, a.classes)
    problems = verify(a.db)
    if problems:
        log.error("%s: does not match its manifest:\n%s", a.db, "\n".join(f"  {p}" for p in problems))
        return Exit.FAILED
    m = read_manifest(a.db)
    d = m["datum"]
    print(f"{a.db}: OK, {m['count']} Datums {d['channels']}x{d['height']}x{d['width']}, {m['num_labels']} labels")
    return 0


def _cmd_mean(a: argparse.Namespace) -> int:
    mean = compute_mean(a.db, a.out)
    print(f"{a.out}: mean per channel (BGR) " + " ".join(f"{v:.3f}" for v in mean.mean(axis=(1, 2))))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    """The options of the writers from a list (build, derive)."""
    p.add_argument("--classes", type=argtypes.whole(1), metavar="N",
                   help="class count of the nets that will read it: every label must be below N")
    p.add_argument("--shuffle", action="store_true", help="store in a seeded random order")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="seed of --shuffle (default 0)")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out unusable images, listed in DB.skipped.tsv, instead of stopping")
    p.add_argument("--commit-every", type=argtypes.whole(1), default=DEFAULT_BLOCK, metavar="N",
                   help=f"images a transaction (default {DEFAULT_BLOCK})")


def _build_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("build", help="decode and warp a Caffe list into an LMDB (as convert_imageset)")
    b.add_argument("--list", required=True, help="Caffe list: 'relative/path label' per line")
    b.add_argument("--root", required=True,
                   help="directory the list's paths are relative to (part of what the build is: resuming it "
                        "with another root is refused)")
    b.add_argument("--out", required=True, help="database directory to create")
    b.add_argument("--size", type=argtypes.whole(1), default=256, help="warp to SIZE x SIZE (default 256)")
    b.add_argument("--jobs", type=argtypes.whole(0), default=0, help="decoding processes (default 0: all cores)")
    b.add_argument("--allow-outside-root", action="store_true",
                   help="accept list paths that are absolute or climb out of --root with '..' (refused by "
                        "default: a list from elsewhere could read any file); symlinks under --root are followed")
    b.add_argument("--max-pixels", type=argtypes.whole(1), default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="an image whose header says more pixels is bad, never decoded (a decompression bomb "
                        f"or a damaged header); bounds each decoding process's memory (default {DEFAULT_MAX_PIXELS:,})")
    _common(b)
    b.set_defaults(func=_cmd_build)


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="LMDB datasets and mean files")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    _build_parser(sub)

    d = sub.add_parser("derive", help="subset database from a whole one, relabelled, without decoding")
    d.add_argument("--from", dest="source", required=True, help="finished whole database")
    d.add_argument("--list", required=True, help="subset list (paths of the whole list, new labels)")
    d.add_argument("--out", required=True, help="database directory to create")
    _common(d)
    d.set_defaults(func=_cmd_derive)

    r = sub.add_parser("relabel", help="a whole database's Datums of the kept classes with new labels (no decoding)")
    r.add_argument("--from", dest="source", required=True, help="finished whole database")
    r.add_argument("--out", required=True, help="database directory to create")
    r.add_argument("--labels", help="a label set of `transfer labels list` (bottomup-486, pascal-removed, ...)")
    r.add_argument("--map", help="instead: a file of 'old_label new_label' lines; unlisted labels are dropped")
    r.add_argument("--splits", type=Path, help="split directory of the whole set's classes (default: the repo's)")
    r.add_argument("--wordnet", type=Path, help="WordNet 3.0 dict directory")
    r.add_argument("--commit-every", type=argtypes.whole(1), default=DEFAULT_BLOCK, metavar="N",
                   help=f"source Datums a transaction (default {DEFAULT_BLOCK})")
    r.set_defaults(func=_cmd_relabel)

    v = sub.add_parser("verify", help="re-read a database and check it against its manifest",
                       description="Exit status 0: it matches; 1: it differs (listed); 2: it cannot be read.")
    v.add_argument("db", help="finished database directory (holding data.mdb and manifest.json)")
    v.add_argument("--classes", type=argtypes.whole(1), metavar="N",
                   help="also check that every label is below N (the class count of the nets reading it)")
    v.set_defaults(func=_cmd_verify)

    m = sub.add_parser("mean", help="per-pixel mean as compute_image_mean")
    m.add_argument("db", help="database directory to average (a training set)")
    m.add_argument("--out", required=True, help="mean.binaryproto to write")
    m.set_defaults(func=_cmd_mean)
