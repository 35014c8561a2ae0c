"""Mean files: the per-pixel mean of a database as compute_image_mean writes it (`transfer data mean`),
and reading one back, checked."""
from __future__ import annotations

from pathlib import Path

import lmdb
import numpy as np

from ..caffe.env import caffe_pb2
from ..core.console import Progress
from ..core.errors import TransferError
from ..core.files import atomic_write
from .dbwrite import writing
from .images import datum_array
from .lmdb_store import PROGRESS_KEY, _lmdb_error, in_child, iter_items, open_read


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


