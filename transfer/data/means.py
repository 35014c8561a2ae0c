"""Mean files: the per-pixel mean of a database as compute_image_mean writes it (`transfer data mean`),
and reading one back, checked."""
from __future__ import annotations

from pathlib import Path

import lmdb
import numpy as np

from ..caffe.env import caffe_pb2
from ..core.console import Progress, stage
from ..core.errors import TransferError
from ..core.files import atomic_write
from .dbwrite import writing
from .images import datum_array
from .lmdb_store import MANIFEST, PROGRESS_KEY, _lmdb_error, datum_shape, in_child, iter_items, open_read

log = stage("data")


def compute_mean(db: str, out: str, labels: set[int] | None = None) -> np.ndarray:
    """Per-pixel mean as compute_image_mean (BlobProto num=1, channels, height, width; float data).
    Sums are exact (uint64); compute_image_mean accumulates in float32, which rounds on big sets.
    labels: only the Datums of these labels (the mean of a view that keeps some classes).
    The database is read in a child process (a damaged file is an error, never a signal)."""
    pb2 = caffe_pb2()
    open_read(db).close()
    shape = datum_shape(db) if (Path(db) / MANIFEST).is_file() else None   # a damaged manifest stops it here
    mean = in_child(db, _mean_of, db, labels)
    if shape is not None and mean.shape != shape:
        raise TransferError(f"{db}: its Datums are {'x'.join(map(str, mean.shape))}, its manifest says "
                            f"{'x'.join(map(str, shape))}; `transfer data verify {db}` lists what differs")
    c, h, w = mean.shape
    blob = pb2.BlobProto(num=1, channels=c, height=h, width=w)  # legacy dims only, as compute_image_mean
    blob.data.extend(mean.ravel().tolist())
    with writing(Path(out), catch=(OSError,)):
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


def _mean_fault(raw: bytes, shape: tuple[int, int, int] | None) -> tuple[str | None, np.ndarray | None]:
    """(why these bytes are not a usable mean, None) or (None, the CxHxW float32 mean)."""
    if not raw:
        return "empty (0 bytes)", None
    try:
        blob = caffe_pb2().BlobProto.FromString(raw)
    except Exception:  # noqa: BLE001 (protobuf's DecodeError)
        return f"not a mean file (no BlobProto in its {len(raw)} bytes)", None
    got = (blob.channels, blob.height, blob.width)
    if min(got) < 1 or len(blob.data) != int(np.prod(got)):
        return (f"a mean of {got[0]}x{got[1]}x{got[2]} needs {int(np.prod(got))} values, the file has "
                f"{len(blob.data)} ({len(raw)} bytes)"), None
    if shape is not None and got != tuple(shape):
        return (f"a mean of {'x'.join(map(str, got))}, but the database's images are "
                f"{'x'.join(map(str, shape))}"), None
    mean = np.asarray(blob.data, np.float32).reshape(got)
    if not np.isfinite(mean).all() or mean.min() < 0 or mean.max() > 255:
        return "holds values outside 0..255 (a mean of 8-bit pixels)", None
    return None, mean


def read_mean(path: str, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """A mean.binaryproto as a CxHxW float32 array; a damaged or foreign file is an error naming it, and
    so is a mean of another shape than `shape` (the database's Datums it is subtracted from)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise TransferError(f"{path}: cannot read the mean ({exc.strerror})") from None
    fault, mean = _mean_fault(raw, shape)
    if fault:
        raise TransferError(f"{path}: {fault}; make it again with `transfer data mean` (`transfer prepare` "
                            "does for a plan's)")
    return mean


def mean_problem(mean: Path, db: Path, since: Path | None = None) -> str | None:
    """Why `mean` is not the up-to-date mean of database `db` (None: it is): missing, older than
    `since` (default: the database's manifest), damaged, or of another shape than the database's Datums."""
    if not mean.is_file():
        return "not made yet"
    since = since or db / MANIFEST
    if mean.stat().st_mtime < since.stat().st_mtime:
        return f"older than {since}"
    try:
        raw = mean.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return _mean_fault(raw, datum_shape(db))[0]


def update_mean(db: Path, mean: Path, labels: set[int] | None = None, since: Path | None = None) -> None:
    """Make `mean` unless it is the database's up-to-date mean (`mean_problem`); a damaged one is said
    and made again, never taken as up to date."""
    problem = mean_problem(mean, db, since)
    if problem is None:
        return
    if mean.is_file():
        log.info("%s: %s; making it again", mean, problem)
    compute_mean(str(db), str(mean), labels)


