"""A fixed set of validation images, read in batches, and the TEST-phase transform of one net.

Both nets of a compared pair see exactly the same images: `count` records of one validation LMDB,
drawn at random with a fixed seed. The set is named by its data set and identified by a sha256 over
the drawn records' keys and bytes, so a cache made from it is never reused for other pixels. Each
net applies its own transform, as its test net would: its own mean file subtracted pixel by pixel,
then the centre crop (Caffe's DataTransformer in TEST phase: offset
(H - crop) / 2, the mean read at the same place), times `scale`; no mirror.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..caffe.env import caffe_pb2
from ..data.means import read_mean
from ..core.errors import TransferError
from ..core.files import repo_path, shown
from ..data.images import datum_array
from ..data.lmdb_store import PROGRESS_KEY, iter_items, open_read


@dataclass(frozen=True)
class ImageSet:
    """`count` validation images of data set `name` (LMDB `lmdb`), read `batch` at a time: a seeded
    random draw of its records, in drawn order, so every batch is a random sample of the set (a
    validation LMDB may be stored class by class, and a batch of one class would measure only
    within-class structure)."""

    name: str
    lmdb: Path
    count: int
    batch: int
    seed: int
    digest: str          # sha256 over the keys and Datum bytes of the chosen records, in order
    shape: tuple[int, int, int]   # channels, height, width of a stored image
    keys: tuple[bytes, ...]

    @property
    def batches(self) -> int:
        return self.count // self.batch

    @property
    def key(self) -> str:
        """Short and file-safe: what a cache file is named by (the digest is checked inside)."""
        return f"{self.name}-{self.count}x{self.batch}-{self.digest[:12]}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "lmdb": shown(self.lmdb), "count": self.count, "batch": self.batch,
                "seed": self.seed, "digest": self.digest, "shape": list(self.shape)}


def _hash_record(h: Any, key: bytes, value: bytes) -> None:
    h.update(len(key).to_bytes(4, "little") + key + len(value).to_bytes(8, "little") + value)


def _values(env: Any, db: Path, keys: tuple[bytes, ...]) -> Iterator[tuple[bytes, bytes]]:
    with env.begin(buffers=False) as txn:
        for key in keys:
            value = txn.get(key)
            if value is None:
                raise TransferError(f"{shown(db)}: record {key.decode(errors='replace')} is gone; the database "
                                    "changed while it was read; rerun")
            yield key, value


def image_set(name: str, db: Path, limit: int, batch: int, seed: int = 0) -> ImageSet:
    """min(limit, size) images of `db` drawn at random (seeded), rounded down to whole batches."""
    if batch < 4:
        raise TransferError(f"--batch {batch}: the unbiased CKA estimator needs batches of at least 4 images")
    if limit < batch:
        raise TransferError(f"--images {limit} is fewer than one batch of {batch}")
    db = repo_path(db)
    with open_read(db) as env:
        keys = [k for k, _ in iter_items(env, keys_only=True) if k != PROGRESS_KEY]
        count = min(limit, len(keys)) // batch * batch
        if count == 0:
            raise TransferError(f"{shown(db)} holds {len(keys)} images, fewer than one batch of {batch}")
        chosen = tuple(keys[i] for i in np.random.default_rng(seed).permutation(len(keys))[:count])
        h, shape, pb2 = hashlib.sha256(), None, caffe_pb2()
        for key, value in _values(env, db, chosen):
            if shape is None:
                shape = _datum(pb2, db, key, value).shape
            _hash_record(h, key, value)
    return ImageSet(name=name, lmdb=db, count=count, batch=batch, seed=seed, digest=h.hexdigest(),
                    shape=tuple(shape), keys=chosen)


def _datum(pb2: Any, db: Path, key: bytes, value: bytes) -> np.ndarray:
    try:
        return datum_array(pb2, value)[0]
    except TransferError as exc:
        raise TransferError(f"{shown(db)}: record {key.decode(errors='replace')}: {exc}") from None


def batches(images: ImageSet) -> Iterator[np.ndarray]:
    """The set's images as uint8 arrays (batch, C, H, W), in drawn order; one batch in memory.
    The bytes are hashed again as they are read: a database changed since the set was drawn is an error."""
    pb2 = caffe_pb2()
    buf = np.empty((images.batch, *images.shape), np.uint8)
    h = hashlib.sha256()
    with open_read(images.lmdb) as env:
        for i, (key, value) in enumerate(_values(env, images.lmdb, images.keys)):
            arr = _datum(pb2, images.lmdb, key, value)
            if arr.shape != images.shape:
                raise TransferError(f"{shown(images.lmdb)}: record {key.decode(errors='replace')} is "
                                    f"{arr.shape}, the first image {images.shape}")
            _hash_record(h, key, value)
            buf[i % images.batch] = arr
            if i % images.batch == images.batch - 1:
                if i == images.count - 1 and h.hexdigest() != images.digest:
                    raise TransferError(f"{shown(images.lmdb)} changed since its images were drawn (they no "
                                        "longer match their digest); rerun")
                yield buf.copy()


@dataclass(frozen=True)
class EvalTransform:
    """What a net's TEST-phase Data layer does to a stored image (Caffe's DataTransformer)."""

    mean: np.ndarray | None      # C x H x W, subtracted before the crop (mean_file)
    mean_values: tuple[float, ...]
    crop: int
    scale: float
    mean_file: str | None        # as the net file names it (for the record)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        x = raw.astype(np.float32)
        if self.mean is not None:
            if self.mean.shape != x.shape[1:]:
                raise TransferError(f"mean {self.mean_file} is {self.mean.shape}, the images are {x.shape[1:]}")
            x = x - self.mean
        elif self.mean_values:
            vals = np.asarray(self.mean_values if len(self.mean_values) > 1 else self.mean_values * x.shape[1],
                              np.float32)
            x = x - vals[None, :, None, None]
        if self.crop:
            h_off, w_off = (x.shape[2] - self.crop) // 2, (x.shape[3] - self.crop) // 2
            if h_off < 0 or w_off < 0:
                raise TransferError(f"crop {self.crop} is larger than the images ({x.shape[2]}x{x.shape[3]})")
            x = x[:, :, h_off:h_off + self.crop, w_off:w_off + self.crop]
        if self.scale != 1.0:
            x = x * np.float32(self.scale)
        return np.ascontiguousarray(x, np.float32)


def transform_of(param: Any, where: str) -> EvalTransform:
    """The transform of a Data layer's `transform_param` (a caffe_pb2 TransformationParameter)."""
    if param.mirror:
        raise TransferError(f"{where}: the TEST-phase Data layer mirrors its images; activations would "
                            "depend on a random draw")
    mean = read_mean(str(repo_path(param.mean_file))) if param.HasField("mean_file") else None
    if mean is not None and len(param.mean_value):
        raise TransferError(f"{where}: both mean_file and mean_value are given (Caffe refuses that too)")
    return EvalTransform(mean=mean, mean_values=tuple(float(v) for v in param.mean_value),
                         crop=int(param.crop_size), scale=float(param.scale),
                         mean_file=param.mean_file if param.HasField("mean_file") else None)
