"""`transfer data verify`: a finished database re-read against its manifest, and the check that its
labels fit a net of N classes (training's preflight uses it). Databases are read in a child process,
so a damaged file is an error naming it, never a signal ending the command."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import lmdb
import numpy as np

from ..caffe.env import caffe_pb2
from ..core.errors import TransferError
from .lmdb_store import MANIFEST, PROGRESS_KEY, _lmdb_error, in_child, iter_items, open_read, read_manifest


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
