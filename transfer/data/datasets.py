"""Datasets: LMDBs of raw Datums and their mean files, as Caffe's convert_imageset / compute_image_mean.

    transfer data build   --list FILES --root DIR --out DB    decode + warp in parallel, resumable
    transfer data derive  --from WHOLE_DB --list SUBSET --out DB   relabel Datums, no JPEG decoding
    transfer data relabel --from WHOLE_DB --labels NAME --out DB   a label set's view of the whole set, no decoding
    transfer data verify  DB                                  re-read and check against manifest.json
    transfer data mean    DB --out mean.binaryproto           per-pixel mean, one streaming pass

Pixels come from transfer/data/images.py (decoded in parallel by transfer/data/decode.py), the resumable,
atomic database from transfer/data/lmdb_store.py.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

import lmdb

from ..caffe.env import caffe_pb2
from ..core.console import Progress, stage
from .decode import Result, decoded_blocks
from ..core.errors import Exit, TransferError
from ..core.files import atomic_write, digest
from .images import Entry, datum_array, read_list
from .lmdb_store import (MANIFEST, PROGRESS_KEY, PartialDB, _lmdb_error, datum_key, identity_diff, in_child,
                         iter_items, key_path, open_read, read_manifest, space_error)

FORMAT = "transfer-lmdb/1"
DEFAULT_BLOCK = 250  # images a commit (~50 MB at 256x256); also the unit of work handed to the pool
log = stage("data")

# ---------------------------------------------------------------------------- shared writer loop

def _order(entries: list[Entry], shuffle: bool, seed: int) -> list[Entry]:
    """List order, or a permutation fixed by the seed (convert_imageset --shuffle, made reproducible)."""
    if not shuffle:
        return entries
    perm = np.random.RandomState(seed).permutation(len(entries))
    return [entries[i] for i in perm]


def _estimate_bytes(n: int, channels: int, height: int, width: int) -> int:
    page = 4096  # a Datum bigger than a page goes to its own overflow pages
    return n * (-(-(channels * height * width + 64) // page) + 1) * page


def _up_to_date(out: Path, identity: dict[str, Any], about: dict[str, str] | None = None) -> bool:
    if not out.exists():
        return False
    if not (out / MANIFEST).is_file():
        raise TransferError(f"{out} already exists but has no {MANIFEST} (not made by transfer); delete it")
    m = read_manifest(out)
    old = dict(m.get("identity") or {})
    old["about"] = {"list_sha256": m.get("list", {}).get("path", "?"), **old.get("about", {})}
    diff = identity_diff(old, identity, about)
    if not diff:
        return True
    raise TransferError(f"{out} already exists and was not built from this list with these options ("
                        + "; ".join(diff) + "); delete it to rebuild")


@contextmanager
def _writing(where: Path, partial: Path | None = None, writer: PartialDB | None = None,
             catch: tuple[type[BaseException], ...] = (OSError, lmdb.Error)) -> Iterator[None]:
    """Writes inside: on an error the writer is closed, and a full disk becomes a NoSpaceError naming
    `where` and what is kept (`partial`); any other error passes unchanged."""
    try:
        yield
    except catch as exc:
        if writer is not None:
            writer.close()
        hint = (f"what was written is kept in {partial}; free space and run the same command again to continue"
                if partial else "nothing was replaced; free space and run the same command again")
        err = space_error(exc, where, hint)
        if err is None:
            raise
        raise err from None


def _write_all(writer: PartialDB, order: list[Entry], results: Iterator[list[Result]], list_path: str,
               describe: Callable[[Entry], str], skip_bad: bool, what: str) -> dict[str, Any]:
    """Write results (in `order`, from position writer.state['next']) one commit per block."""
    state = writer.state
    labels = Counter({int(k): v for k, v in state["labels"].items()})
    skipped = list(state["skipped"])
    count, pos = state["count"], state["next"]
    if writer.resumed:
        log.info("%s: resuming %s at %d/%d", what, writer.path, pos, len(order))
    progress = Progress(what, len(order), pos)

    def snapshot(next_pos: int) -> dict[str, Any]:
        return {"next": next_pos, "count": count, "skipped": skipped,
                "labels": {str(k): v for k, v in sorted(labels.items())}}

    try:
        for block_results in results:
            items = []
            for result in block_results:
                entry = order[pos]
                value, reason = result
                if value is None:
                    if not skip_bad:
                        writer.commit(items, snapshot(pos))  # keep the good images before it
                        raise TransferError(
                            f"{list_path}:{entry.line}: {describe(entry)}: {reason} (the images before "
                            f"it are kept in {writer.path}; fix it and rerun to continue, or pass --skip-bad)")
                    skipped.append([entry.line, entry.path, reason])
                else:
                    items.append((datum_key(pos, entry.path), value))
                    labels[entry.label] += 1
                    count += 1
                pos += 1
            writer.commit(items, snapshot(pos))
            progress.update(pos)
    finally:
        progress.close()
    return snapshot(pos)


def _finish(writer: PartialDB, state: dict[str, Any], manifest: dict[str, Any], skip_bad: bool) -> None:
    out = writer.final
    report = None
    if skip_bad:
        report = out.with_name(out.name + ".skipped.tsv")
        lines = ["line\tpath\treason"] + [f"{ln}\t{p}\t{r}" for ln, p, r in state["skipped"]]
        atomic_write(report, "\n".join(lines) + "\n")
    if state["count"] == 0:
        raise TransferError(f"no image of {manifest['list']['path']} could be used; nothing to write")
    manifest.update(format=FORMAT, count=state["count"], labels=state["labels"],
                    num_labels=len(state["labels"]), skipped=len(state["skipped"]),
                    skipped_report=report.name if report else None, key_format="%08d_%s",
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    with _writing(writer.path, writer.path, writer):
        writer.finish(manifest)
    if state["skipped"]:
        log.info("skipped %d images, listed in %s", len(state["skipped"]), report)


# ---------------------------------------------------------------------------- build / derive

def _start(out: Path, identity: dict[str, Any], expected: int, about: dict[str, str]) -> PartialDB:
    """The writer of out.partial/; a full disk at its start is a NoSpaceError naming it."""
    partial = Path(str(out) + ".partial")
    with _writing(partial, partial if partial.exists() else None):
        return PartialDB(out, identity, expected, about)


def build(list_path: str, root: str, out: str, size: int = 256, shuffle: bool = False, seed: int = 0,
          jobs: int = 0, skip_bad: bool = False, block: int = DEFAULT_BLOCK,
          num_classes: int | None = None) -> Path:
    """Decode, warp and store every image of a Caffe list as convert_imageset does (resumable).
    A build carries its identity (list content, image root, options) and resumes only the same one.
    num_classes: the target's class count, which every label must be below."""
    caffe_pb2()  # fail before any work if Caffe is not configured
    if size < 1:
        raise TransferError(f"--size must be positive, got {size}")
    if not Path(root).is_dir():
        raise TransferError(f"image root {root} is not a directory")
    entries = read_list(list_path, num_classes)
    identity = {"kind": "build", "list_sha256": digest(list_path), "root": os.path.realpath(root),
                "size": [size, size], "shuffle": bool(shuffle), "seed": seed if shuffle else None}
    about = {"list_sha256": str(list_path)}
    out_p = Path(out)
    if _up_to_date(out_p, identity, about):
        log.info("%s is up to date", out)
        return out_p
    out_p.parent.mkdir(parents=True, exist_ok=True)
    order = _order(entries, shuffle, seed)
    writer = _start(out_p, identity, _estimate_bytes(len(order), 3, size, size), about)
    with _writing(writer.path, writer.path, writer, catch=(BaseException,)):
        todo = [(e.path, e.label) for e in order[writer.state["next"]:]]
        jobs = jobs or len(os.sched_getaffinity(0))  # the cores we may use, not all the machine has
        results = decoded_blocks(todo, block, jobs, root, size, size)
        state = _write_all(writer, order, results, list_path,
                           lambda e: os.path.join(root, e.path), skip_bad, f"build {out_p.name}")
    manifest = {"identity": identity, "tool": "transfer data build",
                "datum": {"channels": 3, "height": size, "width": size, "encoded": False},
                "list": {"path": str(list_path), "sha256": identity["list_sha256"], "lines": len(entries)},
                "options": {"root": str(root), "size": size, "shuffle": bool(shuffle), "seed": seed,
                            "skip_bad": bool(skip_bad), "jobs": jobs}}
    _finish(writer, state, manifest, skip_bad)
    return out_p


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
           skip_bad: bool = False, block: int = DEFAULT_BLOCK, num_classes: int | None = None) -> Path:
    """A subset database from a finished whole one: same Datums, new labels, keys in the subset's order.
    Byte-identical to building the subset list directly (nothing is decoded again)."""
    caffe_pb2()  # fail before any work if Caffe is not configured
    whole = read_manifest(source)
    entries = read_list(list_path, num_classes)
    identity = {"kind": "derive", "from_list_sha256": whole["list"]["sha256"], "from_size": whole["identity"]["size"],
                "list_sha256": digest(list_path), "shuffle": bool(shuffle), "seed": seed if shuffle else None}
    about = {"list_sha256": str(list_path), "from_list_sha256": str(source)}
    out_p = Path(out)
    if _up_to_date(out_p, identity, about):
        log.info("%s is up to date", out)
        return out_p
    out_p.parent.mkdir(parents=True, exist_ok=True)
    env = open_read(source)
    try:
        try:
            index = _index_by_path(env)
        except lmdb.Error as exc:
            raise _lmdb_error(Path(source), exc) from None
        order = _order(entries, shuffle, seed)
        missing = [e for e in entries if e.path not in index]
        if missing and not skip_bad:
            listed = "; ".join(f"{list_path}:{e.line}: {e.path}" for e in missing[:5])
            raise TransferError(f"{len(missing)} images of the list are not in {source}: {listed}"
                                + (" ..." if len(missing) > 5 else "") + " (pass --skip-bad to leave them out)")
        d = whole["datum"]
        writer = _start(out_p, identity, _estimate_bytes(len(order), d["channels"], d["height"], d["width"]), about)
        with _writing(writer.path, writer.path, writer, catch=(BaseException,)):
            results = _relabelled(env, index, order[writer.state["next"]:], source, block)
            state = _write_all(writer, order, results, list_path, lambda e: e.path, skip_bad, f"derive {out_p.name}")
    finally:
        env.close()
    manifest = {"identity": identity, "tool": "transfer data derive", "datum": dict(d),
                "list": {"path": str(list_path), "sha256": identity["list_sha256"], "lines": len(entries)},
                "derived_from": {"path": str(source), "list_sha256": whole["list"]["sha256"]},
                "options": {"shuffle": bool(shuffle), "seed": seed, "skip_bad": bool(skip_bad)}}
    _finish(writer, state, manifest, skip_bad)
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


def relabel(source: str, label_map: dict[int, int], out: str, name: str | None = None,
            block: int = DEFAULT_BLOCK) -> Path:
    """A database of the whole one's Datums whose label is in `label_map`, each given its new label.

    Keys, order and pixels stay as they are (only the Datum's label field changes; nothing is decoded), so the
    derived set is exactly the whole set's images of the kept classes. Resumable and atomic like `build`."""
    pb2 = caffe_pb2()
    whole = read_manifest(source)
    if not label_map:
        raise TransferError("the label map keeps no class")
    bad = [(o, n) for o, n in label_map.items() if o < 0 or n < 0]
    if bad:
        raise TransferError(f"label map: negative label in {bad[0][0]} -> {bad[0][1]}")
    unknown = sorted(o for o in label_map if str(o) not in whole["labels"])
    if unknown:
        raise TransferError(f"label map: labels {unknown[:10]} are not in {source} (it has "
                            f"{whole['num_labels']} labels)")
    canonical = json.dumps(sorted(label_map.items()))
    identity = {"kind": "relabel", "from_list_sha256": whole["list"]["sha256"], "from_size": whole["identity"]["size"],
                "from_count": whole["count"], "map_sha256": hashlib.sha256(canonical.encode()).hexdigest()}
    out_p = Path(out)
    if _up_to_date(out_p, identity):
        log.info("%s is up to date", out)
        return out_p
    out_p.parent.mkdir(parents=True, exist_ok=True)
    expected = sum(v for k, v in whole["labels"].items() if int(k) in label_map)
    d = whole["datum"]
    writer = PartialDB(out_p, identity, _estimate_bytes(expected, d["channels"], d["height"], d["width"]))
    state = dict(writer.state)
    labels = Counter({int(k): v for k, v in state["labels"].items()})
    if writer.resumed:
        log.info("relabel %s: resuming %s at %d/%d", out_p.name, writer.path, state["next"], whole["count"])
    progress = Progress(f"relabel {out_p.name}", whole["count"], state["next"])
    env = open_read(source)
    try:
        with env.begin(buffers=True) as txn:
            cur = txn.cursor()
            pos, items = 0, []
            for key, value in cur:    # `next` counts source Datums already looked at
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
                if pos % block == 0 or pos == whole["count"]:
                    state = {"next": pos, "count": state["count"] + len(items), "skipped": [],
                             "labels": {str(k): v for k, v in sorted(labels.items())}}
                    writer.commit(items, state)
                    items = []
                    progress.update(pos)
        if pos != whole["count"]:
            raise TransferError(f"{source}: {pos} Datums, its manifest says {whole['count']}")
    except BaseException:
        writer.close()
        raise
    finally:
        progress.close()
        env.close()
    manifest = {"identity": identity, "tool": "transfer data relabel", "datum": dict(d),
                "list": {"path": whole["list"]["path"], "sha256": whole["list"]["sha256"], "lines": whole["count"]},
                "derived_from": {"path": str(source), "list_sha256": whole["list"]["sha256"]},
                "label_map": {str(o): n for o, n in sorted(label_map.items())}, "label_set": name}
    _finish(writer, state, manifest, False)
    return out_p


# ---------------------------------------------------------------------------- verify / mean

def verify(db: str) -> list[str]:
    """Re-read every Datum and compare with the manifest; the differences (empty: all good).
    Read in a child process: a damaged file is an error naming it, never a signal ending the command."""
    read_manifest(db)
    open_read(db).close()  # a truncated or foreign data file is named before anything else
    return in_child(db, _verify, db)


def _verify(db: str) -> list[str]:
    try:
        return _verify_items(db)
    except lmdb.Error as exc:
        raise _lmdb_error(Path(db), exc) from None


def _verify_items(db: str) -> list[str]:
    pb2 = caffe_pb2()
    m = read_manifest(db)
    want = m["datum"]
    shape = (want["channels"], want["height"], want["width"])
    problems: list[str] = []
    labels: Counter = Counter()
    count, last_index = 0, -1
    with open_read(db) as env:
        for key, value in iter_items(env):
            if key == PROGRESS_KEY:
                problems.append("holds an unfinished build's progress record")
                continue
            try:
                index = int(key[:8])
                ok_key = key[8:9] == b"_" and index > last_index
            except ValueError:
                index, ok_key = last_index, False
            if not ok_key and len(problems) < 20:
                problems.append(f"key {key[:60]!r} is not '%08d_path' in increasing order")
            last_index = index
            try:
                datum = pb2.Datum.FromString(value)
            except Exception:  # noqa: BLE001 (protobuf's DecodeError: damaged bytes)
                problems.append(f"{key.decode(errors='replace')}: not a Datum (damaged)")
                continue
            got = (datum.channels, datum.height, datum.width)
            if (got != shape or datum.encoded or len(datum.data) != int(np.prod(shape))) and len(problems) < 20:
                problems.append(f"{key.decode(errors='replace')}: Datum {got} with {len(datum.data)} bytes"
                                f"{' (encoded)' if datum.encoded else ''}, manifest says {shape} raw")
            labels[datum.label] += 1
            count += 1
    if count != m["count"]:
        problems.append(f"count: manifest {m['count']}, database {count}")
    got_labels = {str(k): v for k, v in sorted(labels.items())}
    if got_labels != m["labels"]:
        diff = [f"label {k}: manifest {m['labels'].get(k, 0)}, database {got_labels.get(k, 0)}"
                for k in sorted(set(got_labels) | set(m["labels"]), key=int)
                if m["labels"].get(k, 0) != got_labels.get(k, 0)]
        problems.append("label histogram differs: " + "; ".join(diff[:10]) + (" ..." if len(diff) > 10 else ""))
    return problems


def compute_mean(db: str, out: str, labels: set[int] | None = None) -> np.ndarray:
    """Per-pixel mean as compute_image_mean (BlobProto num=1, channels, height, width; float data).
    Sums are exact (uint64); compute_image_mean accumulates in float32, which rounds on big sets.
    labels: only the Datums of these labels (the mean of a view that keeps some classes).
    The database is read in a child process (a damaged file is an error, never a signal)."""
    pb2 = caffe_pb2()
    open_read(db).close()
    mean = in_child(db, _mean_of, db, labels)
    c, h, w = mean.shape
    blob = pb2.BlobProto(num=1, channels=c, height=h, width=w)  # legacy dims only, as compute_image_mean
    blob.data.extend(mean.ravel().tolist())
    with _writing(Path(out), catch=(OSError,)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, blob.SerializeToString())
    return mean


def _mean_of(db: str, labels: set[int] | None) -> np.ndarray:
    try:
        return _mean_items(db, labels)
    except lmdb.Error as exc:
        raise _lmdb_error(Path(db), exc) from None


def _mean_items(db: str, labels: set[int] | None) -> np.ndarray:
    pb2 = caffe_pb2()
    total: np.ndarray | None = None
    count = 0
    with open_read(db) as env:
        progress = Progress(f"mean {Path(db).name}", env.stat()["entries"], every=None)
        for key, value in iter_items(env):
            if key == PROGRESS_KEY:
                raise TransferError(f"{db} holds an unfinished build; finish it first")
            try:
                arr, label = datum_array(pb2, value)
            except TransferError as exc:
                raise TransferError(f"{Path(db) / 'data.mdb'}: {key.decode(errors='replace')}: {exc}; copy the "
                                    "database again or rebuild it") from None
            if labels is not None and label not in labels:
                continue
            if total is None:
                total = np.zeros(arr.shape, np.uint64)
            elif arr.shape != total.shape:
                raise TransferError(f"{db}: {key.decode(errors='replace')} is {arr.shape}, "
                                    f"the first Datum {total.shape}")
            total += arr
            count += 1
            if count % 1000 == 0:
                progress.update(count)
        progress.update(count)
        progress.close()
    if total is None:
        raise TransferError(f"{db} is empty")
    return (total / count).astype(np.float32)


def read_mean(path: str) -> np.ndarray:
    """A mean.binaryproto as a CxHxW float32 array; a damaged or foreign file is an error naming it."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise TransferError(f"{path}: cannot read the mean ({exc.strerror})") from None
    try:
        blob = caffe_pb2().BlobProto.FromString(raw)
    except Exception:  # noqa: BLE001 (protobuf's DecodeError)
        raise TransferError(f"{path}: not a mean file (no BlobProto in its {len(raw)} bytes); "
                            "make it again with `transfer data mean`") from None
    shape = (blob.channels, blob.height, blob.width)
    if min(shape) < 1 or len(blob.data) != int(np.prod(shape)):
        raise TransferError(f"{path}: a mean of {shape[0]}x{shape[1]}x{shape[2]} needs {int(np.prod(shape))} "
                            f"values, the file has {len(blob.data)}; make it again with `transfer data mean`")
    mean = np.asarray(blob.data, np.float32).reshape(shape)
    if not np.isfinite(mean).all() or mean.min() < 0 or mean.max() > 255:
        raise TransferError(f"{path}: holds values outside 0..255 (a mean of 8-bit pixels); make it again")
    return mean


def check_label_range(db: str | os.PathLike, num_classes: int) -> dict[int, int]:
    """Check that every label of a database is in 0..num_classes-1 (a net with that many outputs can
    train on it: Caffe itself would abort, or corrupt its heap, on a label past its last output).
    Uses the manifest's label histogram; a database without one (not made here) is read in full.
    Returns {label: count}; raises a TransferError naming the database, the label and the count."""
    db = Path(db)
    if (db / MANIFEST).is_file():
        labels = {int(k): int(v) for k, v in read_manifest(db).get("labels", {}).items()}
        source = f"{db / MANIFEST}"
    else:
        open_read(db).close()
        labels = in_child(db, _label_histogram, str(db))
        source = f"{db}"
    bad = sorted(k for k in labels if not 0 <= k < num_classes)
    if bad:
        raise TransferError(f"{source}: {sum(labels[k] for k in bad)} images have labels outside "
                            f"0..{num_classes - 1} (e.g. {bad[-1]}), but the net has {num_classes} classes; "
                            "build the database from the net's list, or give the net that many outputs")
    return labels


def _label_histogram(db: str) -> dict[int, int]:
    pb2 = caffe_pb2()
    labels: Counter = Counter()
    try:
        with open_read(db) as env:
            for key, value in iter_items(env):
                if key == PROGRESS_KEY:
                    continue
                try:
                    labels[pb2.Datum.FromString(value).label] += 1
                except Exception:  # noqa: BLE001 (protobuf's DecodeError)
                    raise TransferError(f"{Path(db) / 'data.mdb'}: {key.decode(errors='replace')}: not a Datum "
                                        "(its bytes are damaged)") from None
    except lmdb.Error as exc:
        raise _lmdb_error(Path(db), exc) from None
    return dict(labels)


# ---------------------------------------------------------------------------- CLI

def _cmd_build(a: argparse.Namespace) -> int:
    build(a.list, a.root, a.out, size=a.size, shuffle=a.shuffle, seed=a.seed, jobs=a.jobs,
          skip_bad=a.skip_bad, block=a.commit_every, num_classes=a.classes)
    return 0


def _cmd_derive(a: argparse.Namespace) -> int:
    derive(a.source, a.list, a.out, shuffle=a.shuffle, seed=a.seed, skip_bad=a.skip_bad, block=a.commit_every,
           num_classes=a.classes)
    return 0


def _cmd_relabel(a: argparse.Namespace) -> int:
    if (a.labels is None) == (a.map is None):
        raise TransferError("give one of --labels NAME (a label set) or --map FILE ('old new' a line)")
    if a.labels is not None:
        from . import labelsets
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


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="LMDB datasets and mean files")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--classes", type=int, metavar="N",
                       help="class count of the nets that will read it: every label must be below N")
        p.add_argument("--shuffle", action="store_true", help="store in a seeded random order")
        p.add_argument("--seed", type=int, default=0, help="seed of --shuffle (default 0)")
        p.add_argument("--skip-bad", action="store_true",
                       help="leave out unusable images, listed in DB.skipped.tsv, instead of stopping")
        p.add_argument("--commit-every", type=int, default=DEFAULT_BLOCK, metavar="N",
                       help=f"images a transaction (default {DEFAULT_BLOCK})")

    b = sub.add_parser("build", help="decode and warp a Caffe list into an LMDB (as convert_imageset)")
    b.add_argument("--list", required=True, help="Caffe list: 'relative/path label' per line")
    b.add_argument("--root", required=True,
                   help="directory the list's paths are relative to (part of what the build is: resuming it "
                        "with another root is refused)")
    b.add_argument("--out", required=True, help="database directory to create")
    b.add_argument("--size", type=int, default=256, help="warp to SIZE x SIZE (default 256)")
    b.add_argument("--jobs", type=int, default=0, help="decoding processes (default: all cores)")
    common(b)
    b.set_defaults(func=_cmd_build)

    d = sub.add_parser("derive", help="subset database from a whole one, relabelled, without decoding")
    d.add_argument("--from", dest="source", required=True, help="finished whole database")
    d.add_argument("--list", required=True, help="subset list (paths of the whole list, new labels)")
    d.add_argument("--out", required=True, help="database directory to create")
    common(d)
    d.set_defaults(func=_cmd_derive)

    r = sub.add_parser("relabel", help="a whole database's Datums of the kept classes with new labels (no decoding)")
    r.add_argument("--from", dest="source", required=True, help="finished whole database")
    r.add_argument("--out", required=True, help="database directory to create")
    r.add_argument("--labels", help="a label set of `transfer labels list` (bottomup-486, pascal-removed, ...)")
    r.add_argument("--map", help="instead: a file of 'old_label new_label' lines; unlisted labels are dropped")
    r.add_argument("--splits", type=Path, help="split directory of the whole set's classes (default: the repo's)")
    r.add_argument("--wordnet", type=Path, help="WordNet 3.0 dict directory")
    r.add_argument("--commit-every", type=int, default=DEFAULT_BLOCK, metavar="N",
                   help=f"source Datums a transaction (default {DEFAULT_BLOCK})")
    r.set_defaults(func=_cmd_relabel)

    v = sub.add_parser("verify", help="re-read a database and check it against its manifest",
                       description="Exit status 0: it matches; 1: it differs (listed); 2: it cannot be read.")
    v.add_argument("db", help="finished database directory (holding data.mdb and manifest.json)")
    v.add_argument("--classes", type=int, metavar="N",
                   help="also check that every label is below N (the class count of the nets reading it)")
    v.set_defaults(func=_cmd_verify)

    m = sub.add_parser("mean", help="per-pixel mean as compute_image_mean")
    m.add_argument("db", help="database directory to average (a training set)")
    m.add_argument("--out", required=True, help="mean.binaryproto to write")
    m.set_defaults(func=_cmd_mean)
