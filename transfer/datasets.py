"""Datasets: LMDBs of raw Datums and their mean files, as Caffe's convert_imageset / compute_image_mean.

    transfer data build   --list FILES --root DIR --out DB    decode + warp in parallel, resumable
    transfer data derive  --from WHOLE_DB --list SUBSET --out DB   relabel Datums, no JPEG decoding
    transfer data verify  DB                                  re-read and check against manifest.json
    transfer data mean    DB --out mean.binaryproto           per-pixel mean, one streaming pass

Pixels come from transfer/images.py, the resumable, atomic database from transfer/lmdb_store.py.
"""
from __future__ import annotations

import argparse
import mmap
import os
import sys
import time
from collections import Counter, deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

import lmdb

from .caffe_env import caffe_pb2
from .errors import TransferError
from .files import atomic_write, digest, duration
from .images import Entry, ImageError, datum_array, datum_bytes, load_warped, read_list
from .lmdb_store import (MANIFEST, PROGRESS_KEY, PartialDB, _lmdb_error, datum_key, identity_diff, in_child,
                         iter_items, key_path, open_read, read_manifest, space_error)

FORMAT = "transfer-lmdb/1"
DEFAULT_BLOCK = 250  # images a commit (~50 MB at 256x256); also the unit of work handed to the pool
# Blocks queued to the workers beyond the one being written: a commit waits on the disk (fsync), and
# the workers must have enough queued to stay busy meanwhile. Memory: (AHEAD + 1) blocks of Datums.
AHEAD = 4

Result = tuple[bytes | memoryview | int | None, str | None]  # (serialized Datum, None) or (None, reason)


# ---------------------------------------------------------------------------- progress line

class Progress:
    """done/total, images/s and time left on stderr: redrawn in place on a TTY, a line every few s otherwise."""

    def __init__(self, what: str, total: int, done: int = 0, every: float | None = None) -> None:
        self.what, self.total, self.first = what, total, done
        self.t0 = self.last = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.every = every if every is not None else (0.25 if self.tty else 5.0)
        self.done = done

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = (done - self.first) / max(now - self.t0, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        pct = 100.0 * done / max(self.total, 1)
        line = f"{self.what}: {done}/{self.total} ({pct:.1f}%), {rate:.0f} images/s, {duration(left)} left"
        sys.stderr.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        self.update(self.done, force=True)
        if self.tty:
            sys.stderr.write("\n")


# ---------------------------------------------------------------------------- decoding workers

_WORKER: dict[str, Any] = {}


def _init_worker(root: str, width: int, height: int, shm: mmap.mmap | None = None, slot: int = 0) -> None:
    import cv2  # noqa: PLC0415

    cv2.setNumThreads(1)  # one process a core already; OpenCV's own threads would only contend
    _WORKER.update(root=root, width=width, height=height, pb2=caffe_pb2(), shm=shm, slot=slot)


def _convert(task: tuple[int, str, int]) -> Result:
    """(Datum, None) or (None, reason). With shared memory the Datum goes into the task's slot and
    only its length comes back: no pickling of ~200 KB through a pipe for every image."""
    index, path, label = task
    w = _WORKER
    try:
        img = load_warped(os.path.join(w["root"], path), w["width"], w["height"])
        value = datum_bytes(w["pb2"], img, label)
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 (a decoder crash on one file is that file's problem)
        return None, f"{type(exc).__name__}: {exc}"
    shm, slot = w["shm"], w["slot"]
    if shm is None or len(value) > slot:
        return value, None
    shm[index * slot:index * slot + len(value)] = value
    return len(value), None


def _decoded_blocks(tasks: list[tuple[str, int]], block: int, jobs: int, root: str,
                    width: int, height: int) -> Iterator[list[Result]]:
    """Results block by block, in order. AHEAD blocks are queued so workers keep decoding while the
    writer commits, and no more than that, so memory stays bounded however slow the disk is. A block's
    Datums are valid until the next block is asked for (their shared-memory slots are then reused)."""
    starts = iter(range(0, len(tasks), block))
    if jobs <= 1:
        _init_worker(root, width, height)
        for s in starts:
            yield [_convert((0, *t)) for t in tasks[s:s + block]]
        return
    import multiprocessing as mp  # noqa: PLC0415

    slot = 3 * width * height + 64  # a raw Datum: the pixels and a few header bytes
    ring = (AHEAD + 1) * block      # slots of the block being written and of those queued
    shm = mmap.mmap(-1, ring * slot)  # anonymous, shared with the forked workers
    view = memoryview(shm)
    with mp.get_context("fork").Pool(jobs, initializer=_init_worker,
                                     initargs=(root, width, height, shm, slot)) as pool:
        chunk = max(1, block // (jobs * 4))
        queued: deque = deque()

        def submit() -> None:
            s = next(starts, None)
            if s is not None:
                work = [((s + i) % ring, path, label) for i, (path, label) in enumerate(tasks[s:s + block])]
                queued.append((s, pool.map_async(_convert, work, chunk)))

        for _ in range(AHEAD):
            submit()
        while queued:
            s, pending = queued.popleft()
            results = pending.get()
            submit()
            out: list[Result] = []
            for i, (value, reason) in enumerate(results):
                if isinstance(value, int):
                    at = (s + i) % ring * slot
                    value = view[at:at + value]
                out.append((value, reason))
            yield out
            del out, results
    try:
        view.release()
        shm.close()
    except BufferError:
        pass  # a caller still holds a Datum view; the map goes with the last reference


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


def _up_to_date(out: Path, identity: dict[str, Any], about: dict[str, str]) -> bool:
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


def _no_space(exc: BaseException, where: Path, partial: Path | None = None) -> BaseException:
    """The error to raise for a failed write: a NoSpaceError when the disk is full, else exc."""
    hint = (f"what was written is kept in {partial}; free space and run the same command again to continue"
            if partial else "nothing was replaced; free space and run the same command again")
    return space_error(exc, where, hint) or exc


def _write_all(writer: PartialDB, order: list[Entry], results: Iterator[list[Result]], list_path: str,
               describe: Callable[[Entry], str], skip_bad: bool, what: str) -> dict[str, Any]:
    """Write results (in `order`, from position writer.state['next']) one commit per block."""
    state = writer.state
    labels = Counter({int(k): v for k, v in state["labels"].items()})
    skipped = list(state["skipped"])
    count, pos = state["count"], state["next"]
    if writer.resumed:
        print(f"{what}: resuming {writer.path} at {pos}/{len(order)}", file=sys.stderr)
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
    try:
        writer.finish(manifest)
    except (OSError, lmdb.Error) as exc:
        writer.close()
        err = _no_space(exc, writer.path, writer.path)
        if err is exc:
            raise
        raise err from None
    if state["skipped"]:
        print(f"skipped {len(state['skipped'])} images, listed in {report}", file=sys.stderr)


# ---------------------------------------------------------------------------- build / derive

def _start(out: Path, identity: dict[str, Any], expected: int, about: dict[str, str]) -> PartialDB:
    """The writer of out.partial/; a full disk at its start is a NoSpaceError naming it."""
    partial = Path(str(out) + ".partial")
    try:
        return PartialDB(out, identity, expected, about)
    except (OSError, lmdb.Error) as exc:
        err = _no_space(exc, partial, partial if partial.exists() else None)
        if err is exc:
            raise
        raise err from None


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
        print(f"{out} is up to date", file=sys.stderr)
        return out_p
    out_p.parent.mkdir(parents=True, exist_ok=True)
    order = _order(entries, shuffle, seed)
    writer = _start(out_p, identity, _estimate_bytes(len(order), 3, size, size), about)
    try:
        todo = [(e.path, e.label) for e in order[writer.state["next"]:]]
        jobs = jobs or len(os.sched_getaffinity(0))  # the cores we may use, not all the machine has
        results = _decoded_blocks(todo, block, jobs, root, size, size)
        state = _write_all(writer, order, results, list_path,
                           lambda e: os.path.join(root, e.path), skip_bad, f"build {out_p.name}")
    except BaseException as exc:
        writer.close()
        err = _no_space(exc, writer.path, writer.path)
        if err is exc:
            raise
        raise err from None
    manifest = {"identity": identity, "tool": "transfer data build",
                "datum": {"channels": 3, "height": size, "width": size, "encoded": False},
                "list": {"path": str(list_path), "sha256": identity["list_sha256"], "lines": len(entries)},
                "options": {"root": str(root), "size": size, "shuffle": bool(shuffle), "seed": seed,
                            "skip_bad": bool(skip_bad), "jobs": jobs}}
    _finish(writer, state, manifest, skip_bad)
    return out_p


def derive(source: str, list_path: str, out: str, shuffle: bool = False, seed: int = 0,
           skip_bad: bool = False, block: int = DEFAULT_BLOCK, num_classes: int | None = None) -> Path:
    """A subset database from a finished whole one: same Datums, new labels, keys in the subset's order.
    Byte-identical to building the subset list directly (nothing is decoded again)."""
    pb2 = caffe_pb2()
    whole = read_manifest(source)
    entries = read_list(list_path, num_classes)
    identity = {"kind": "derive", "from_list_sha256": whole["list"]["sha256"], "from_size": whole["identity"]["size"],
                "list_sha256": digest(list_path), "shuffle": bool(shuffle), "seed": seed if shuffle else None}
    about = {"list_sha256": str(list_path), "from_list_sha256": str(source)}
    out_p = Path(out)
    if _up_to_date(out_p, identity, about):
        print(f"{out} is up to date", file=sys.stderr)
        return out_p
    out_p.parent.mkdir(parents=True, exist_ok=True)
    env = open_read(source)
    index: dict[str, bytes] = {}
    try:
        for key, _ in iter_items(env, keys_only=True):
            if key != PROGRESS_KEY:
                index.setdefault(key_path(key), key)
    except lmdb.Error as exc:
        env.close()
        raise _lmdb_error(Path(source), exc) from None
    order = _order(entries, shuffle, seed)
    if not skip_bad:
        missing = [e for e in entries if e.path not in index]
        if missing:
            shown = "; ".join(f"{list_path}:{e.line}: {e.path}" for e in missing[:5])
            raise TransferError(f"{len(missing)} images of the list are not in {source}: {shown}"
                                + (" ..." if len(missing) > 5 else "") + " (pass --skip-bad to leave them out)")
    d = whole["datum"]
    try:
        writer = _start(out_p, identity, _estimate_bytes(len(order), d["channels"], d["height"], d["width"]), about)
    except BaseException:
        env.close()
        raise

    def relabelled() -> Iterator[list[Result]]:
        todo = order[writer.state["next"]:]
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

    try:
        state = _write_all(writer, order, relabelled(), list_path, lambda e: e.path, skip_bad,
                           f"derive {out_p.name}")
    except BaseException as exc:
        writer.close()
        err = _no_space(exc, writer.path, writer.path)
        if err is exc:
            raise
        raise err from None
    finally:
        env.close()
    manifest = {"identity": identity, "tool": "transfer data derive", "datum": dict(d),
                "list": {"path": str(list_path), "sha256": identity["list_sha256"], "lines": len(entries)},
                "derived_from": {"path": str(source), "list_sha256": whole["list"]["sha256"]},
                "options": {"shuffle": bool(shuffle), "seed": seed, "skip_bad": bool(skip_bad)}}
    _finish(writer, state, manifest, skip_bad)
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


def compute_mean(db: str, out: str) -> np.ndarray:
    """Per-pixel mean as compute_image_mean (BlobProto num=1, channels, height, width; float data).
    Sums are exact (uint64); compute_image_mean accumulates in float32, which rounds on big sets.
    The database is read in a child process (a damaged file is an error, never a signal)."""
    pb2 = caffe_pb2()
    open_read(db).close()
    mean = in_child(db, _mean_of, db)
    c, h, w = mean.shape
    blob = pb2.BlobProto(num=1, channels=c, height=h, width=w)  # legacy dims only, as compute_image_mean
    blob.data.extend(mean.ravel().tolist())
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, blob.SerializeToString())
    except OSError as exc:
        err = _no_space(exc, Path(out))
        if err is exc:
            raise
        raise err from None
    return mean


def _mean_of(db: str) -> np.ndarray:
    try:
        return _mean_items(db)
    except lmdb.Error as exc:
        raise _lmdb_error(Path(db), exc) from None


def _mean_items(db: str) -> np.ndarray:
    pb2 = caffe_pb2()
    total: np.ndarray | None = None
    count = 0
    with open_read(db) as env:
        progress = Progress(f"mean {Path(db).name}", env.stat()["entries"], every=None)
        for key, value in iter_items(env):
            if key == PROGRESS_KEY:
                raise TransferError(f"{db} holds an unfinished build; finish it first")
            try:
                arr, _ = datum_array(pb2, value)
            except TransferError as exc:
                raise TransferError(f"{Path(db) / 'data.mdb'}: {key.decode(errors='replace')}: {exc}; copy the "
                                    "database again or rebuild it") from None
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


def _cmd_verify(a: argparse.Namespace) -> int:
    if a.classes is not None:
        check_label_range(a.db, a.classes)
    problems = verify(a.db)
    if problems:
        print(f"{a.db}: does not match its manifest:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
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
