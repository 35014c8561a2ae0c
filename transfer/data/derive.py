"""New databases from a finished one, nothing decoded: `transfer data derive` (a subset list's images with
the subset's labels, byte-identical to building that list) and `transfer data relabel` (the Datums of
the kept classes with new labels: a label set of the whole set). Resumable and atomic like a build.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import lmdb

from ..caffe.env import caffe_pb2
from ..core.console import Progress
from ..core.errors import TransferError
from ..core.files import digest
from . import dbwrite
from .decode import Result
from .images import Entry, read_list
from .lmdb_store import PROGRESS_KEY, PartialDB, _lmdb_error, iter_items, key_path, open_read, read_manifest

log = dbwrite.log


def _index_by_path(env: Any) -> dict[str, bytes]:
    """Image path -> key of a finished database (its keys are `%08d_<path>`)."""
    index: dict[str, bytes] = {}
    for key, _ in iter_items(env, keys_only=True):
        if key != PROGRESS_KEY:
            index.setdefault(key_path(key), key)
    return index


def _relabelled(env: Any, index: dict[str, bytes], todo: list[Entry], source: str,
                block: int) -> Iterator[list[Result]]:
    """The source database's Datums of `todo`, with the subset's labels, block by block."""
    pb2 = caffe_pb2()
    with env.begin(buffers=True) as txn:
        for s in range(0, len(todo), block):
            results: list[Result] = []
            for e in todo[s:s + block]:
                key = index.get(e.path)
                if key is None:
                    results.append((None, f"not in {source} (skipped when it was built?)"))
                    continue
                try:
                    datum = pb2.Datum.FromString(txn.get(key))
                except lmdb.Error as exc:
                    raise _lmdb_error(Path(source), exc) from None
                datum.label = e.label
                results.append((datum.SerializeToString(), None))
            yield results


def derive(source: str, list_path: str, out: str, shuffle: bool = False, seed: int = 0,
           skip_bad: bool = False, block: int = dbwrite.DEFAULT_BLOCK, num_classes: int | None = None) -> Path:
    """A subset database from a finished whole one: same Datums, new labels, keys in the subset's order.
    Byte-identical to building the subset list directly (nothing is decoded again)."""
    caffe_pb2()  # fail before any work if Caffe is not configured
    dbwrite.check_options(block, seed)
    whole = read_manifest(source)
    entries = read_list(list_path, num_classes)
    identity = {"kind": "derive", "from_list_sha256": whole["list"]["sha256"], "from_size": whole["identity"]["size"],
                "list_sha256": digest(list_path), "shuffle": bool(shuffle), "seed": seed if shuffle else None}
    about = {"list_sha256": str(list_path), "from_list_sha256": str(source)}
    out_p = Path(out)
    if dbwrite.up_to_date(out_p, identity, about):
        log.info("%s is up to date", out)
        return out_p
    out_p.parent.mkdir(parents=True, exist_ok=True)
    env = open_read(source)
    try:
        try:
            index = _index_by_path(env)
        except lmdb.Error as exc:
            raise _lmdb_error(Path(source), exc) from None
        order = dbwrite.order_entries(entries, shuffle, seed)
        missing = [e for e in entries if e.path not in index]
        if missing and not skip_bad:
            listed = "; ".join(f"{list_path}:{e.line}: {e.path}" for e in missing[:5])
            raise TransferError(f"{len(missing)} images of the list are not in {source}: {listed}"
                                + (" ..." if len(missing) > 5 else "") + " (pass --skip-bad to leave them out)")
        d = whole["datum"]
        dbwrite.check_space(out_p, len(order) - len(missing), (d["channels"], d["height"], d["width"]))
        expected = dbwrite.estimate_bytes(len(order), d["channels"], d["height"], d["width"])
        writer = dbwrite.start(out_p, identity, expected, about)
        with dbwrite.writing(writer.path, writer.path, writer, catch=(BaseException,)):
            results = _relabelled(env, index, order[writer.state["next"]:], source, block)
            state = dbwrite.write_all(writer, order, results, list_path, lambda e: e.path, skip_bad,
                                      f"derive {out_p.name}")
    finally:
        env.close()
    manifest = {"identity": identity, "tool": "transfer data derive", "datum": dict(d),
                "list": {"path": str(list_path), "sha256": identity["list_sha256"], "lines": len(entries)},
                "derived_from": {"path": str(source), "list_sha256": whole["list"]["sha256"]},
                "options": {"shuffle": bool(shuffle), "seed": seed, "skip_bad": bool(skip_bad)}}
    dbwrite.finish(writer, state, manifest, skip_bad)
    return out_p


def read_label_map(path: str | os.PathLike) -> dict[int, int]:
    """A label map file: 'old new' a line (label of the whole set -> new label); '#' starts a comment."""
    out: dict[int, int] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise TransferError(f"{path}: cannot read the label map ({exc.strerror})") from None
    for lineno, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].split()
        if not text:
            continue
        if len(text) != 2 or not all(t.isdigit() for t in text):
            raise TransferError(f"{path}:{lineno}: expected 'old_label new_label', got {line!r}")
        old, new = int(text[0]), int(text[1])
        if old in out:
            raise TransferError(f"{path}:{lineno}: label {old} is mapped twice")
        out[old] = new
    if not out:
        raise TransferError(f"{path}: the label map is empty")
    return out


def _check_label_map(source: str, whole: dict[str, Any], label_map: dict[int, int]) -> None:
    if not label_map:
        raise TransferError("the label map keeps no class")
    bad = [(o, n) for o, n in label_map.items() if o < 0 or n < 0]
    if bad:
        raise TransferError(f"label map: negative label in {bad[0][0]} -> {bad[0][1]}")
    unknown = sorted(o for o in label_map if str(o) not in whole["labels"])
    if unknown:
        raise TransferError(f"label map: labels {unknown[:10]} are not in {source} (it has "
                            f"{whole['num_labels']} labels)")


def relabel(source: str, label_map: dict[int, int], out: str, name: str | None = None,
            block: int = dbwrite.DEFAULT_BLOCK) -> Path:
    """A database of the whole one's Datums whose label is in `label_map`, each given its new label.

    Keys, order and pixels stay as they are (only the Datum's label field changes; nothing is decoded), so the
    derived set is exactly the whole set's images of the kept classes. Resumable and atomic like `build`."""
    caffe_pb2()  # fail before any work if Caffe is not configured
    dbwrite.check_options(block)
    whole = read_manifest(source)
    _check_label_map(source, whole, label_map)
    canonical = json.dumps(sorted(label_map.items()))
    identity = {"kind": "relabel", "from_list_sha256": whole["list"]["sha256"], "from_size": whole["identity"]["size"],
                "from_count": whole["count"], "map_sha256": hashlib.sha256(canonical.encode()).hexdigest()}
    out_p = Path(out)
    if dbwrite.up_to_date(out_p, identity):
        log.info("%s is up to date", out)
        return out_p
    out_p.parent.mkdir(parents=True, exist_ok=True)
    expected = sum(v for k, v in whole["labels"].items() if int(k) in label_map)
    d = whole["datum"]
    dbwrite.check_space(out_p, expected, (d["channels"], d["height"], d["width"]))
    writer = PartialDB(out_p, identity, dbwrite.estimate_bytes(expected, d["channels"], d["height"], d["width"]))
    if writer.resumed:
        log.info("relabel %s: resuming %s at %d/%d", out_p.name, writer.path, writer.state["next"], whole["count"])
    try:
        state = _relabel_copy(writer, source, whole["count"], label_map, block, f"relabel {out_p.name}")
    except BaseException:
        writer.close()
        raise
    manifest = {"identity": identity, "tool": "transfer data relabel", "datum": dict(d),
                "list": {"path": whole["list"]["path"], "sha256": whole["list"]["sha256"], "lines": whole["count"]},
                "derived_from": {"path": str(source), "list_sha256": whole["list"]["sha256"]},
                "label_map": {str(o): n for o, n in sorted(label_map.items())}, "label_set": name}
    dbwrite.finish(writer, state, manifest, False)
    return out_p


def _relabel_copy(writer: PartialDB, source: str, total: int, label_map: dict[int, int], block: int,
                  what: str) -> dict[str, Any]:
    """Copy the kept Datums of `source`, relabelled, a commit every `block` source Datums, from where
    the writer's progress says (`next` counts source Datums already looked at)."""
    pb2 = caffe_pb2()
    state = dict(writer.state)
    labels = Counter({int(k): v for k, v in state["labels"].items()})
    progress = Progress(what, total, state["next"])
    env = open_read(source)
    try:
        with env.begin(buffers=True) as txn:
            pos, items = 0, []
            for key, value in txn.cursor():
                if key == PROGRESS_KEY:
                    raise TransferError(f"{source} holds an unfinished build; finish it first")
                pos += 1
                if pos <= state["next"]:
                    continue
                datum = pb2.Datum.FromString(value)
                new = label_map.get(datum.label)
                if new is not None:
                    datum.label = new
                    items.append((bytes(key), datum.SerializeToString()))
                    labels[new] += 1
                if pos % block == 0 or pos == total:
                    state = {"next": pos, "count": state["count"] + len(items), "skipped": [],
                             "labels": {str(k): v for k, v in sorted(labels.items())}}
                    writer.commit(items, state)
                    items = []
                    progress.update(pos)
        if pos != total:
            raise TransferError(f"{source}: {pos} Datums, its manifest says {total}")
    finally:
        progress.close()
        env.close()
    return state
