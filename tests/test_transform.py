"""The Data layer's batch transform (caffe/keyed_transform.hpp) through pycaffe on a real LMDB: the same
blobs whatever the thread count, each image's crop and mirror from the keyed stream, Caffe's arithmetic
(mean file, scale), Caffe's distribution of crops and mirrors, and the centre crop outside TRAIN."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from transfer.data import synthetic
from transfer.data.build import build
from transfer.data.means import compute_mean, read_mean
from transfer.data.images import datum_array
from transfer.data.lmdb_store import iter_items, open_read

sys.path.insert(0, str(Path(__file__).parent))
import tinyrun  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not tinyrun.caffe_available(), reason="Caffe is not built (make caffe)")]
SIZE, CROP, BATCH = 16, 12, 32
M64 = (1 << 64) - 1


def mix(x: int) -> int:
    """SplitMix64, as keyed_transform.cpp has it."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def choice(key: int, index: int, span: int) -> tuple[int, int, bool]:
    """(h_off, w_off, mirror) of image `index`: the stream the C++ code draws from."""
    stream = mix(key ^ mix(index))
    return ((mix((stream + 2) & M64) * span) >> 64, (mix((stream + 3) & M64) * span) >> 64,
            bool(mix((stream + 1) & M64) >> 63))


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> tuple[Path, Path, list[np.ndarray], list[int]]:
    root = tmp_path_factory.mktemp("transform")
    syn = synthetic.make_synthetic(root / "syn", num_classes=4, train_per_class=10, val_per_class=1, size=SIZE)
    lmdb_dir = Path(build(str(syn / "train.txt"), str(syn), str(root / "train_lmdb"), size=SIZE, jobs=1))
    mean = root / "mean.binaryproto"
    compute_mean(str(lmdb_dir), str(mean))
    from transfer.caffe.env import caffe_pb2
    images, labels = [], []
    with open_read(lmdb_dir) as env:
        for _, value in iter_items(env):
            image, label = datum_array(caffe_pb2(), value)
            images.append(image)
            labels.append(label)
    return lmdb_dir, mean, images, labels


def forward(db, tmp_path: Path, phase: str = "TRAIN", batches: int = 3, seed: int | None = None,
            mirror: bool = True, **data_param: object) -> list[tuple[np.ndarray, np.ndarray]]:
    lmdb_dir, mean = db[0], db[1]
    net_file = tinyrun.data_net(
        tmp_path / f"data-{phase}-{abs(hash(tuple(data_param.items())))}-{seed}-{mirror}.prototxt", lmdb_dir, BATCH,
        f'mirror: {str(mirror).lower()} crop_size: {CROP} mean_file: "{mean}" scale: 0.5', **data_param)
    return tinyrun.data_batches(net_file, batches, phase, seed)


def test_thread_count_does_not_change_a_seeded_run(db, tmp_path):
    one = forward(db, tmp_path, seed=11, transform_threads=1)
    for threads in (2, 5):
        other = forward(db, tmp_path, seed=11, transform_threads=threads)
        assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(one, other))
    reseeded = forward(db, tmp_path, seed=12, transform_threads=1)
    assert not np.array_equal(one[0][0], reseeded[0][0])      # the seed does reach the crops


def test_each_image_is_its_keyed_crop_of_the_mean_subtracted_datum(db, tmp_path):
    _, mean_path, images, labels = db
    mean = read_mean(str(mean_path)).astype(np.float32)
    key = 0x1234_5678_9ABC_DEF0
    out = forward(db, tmp_path, batches=3, transform_key=key, transform_threads=3)
    seen = []
    for b, (data, label) in enumerate(out):
        for i in range(BATCH):
            index = b * BATCH + i
            image = images[index % len(images)].astype(np.float32)
            h, w, mirror = choice(key, index, SIZE - CROP + 1)
            want = ((image - mean) * np.float32(0.5))[:, h:h + CROP, w:w + CROP]
            if mirror:
                want = want[:, :, ::-1]
            assert np.array_equal(data[i], want), f"image {index}: crop ({h}, {w}), mirror {mirror}"
            assert label[i] == labels[index % len(images)]
            seen.append((h, w, mirror))
    # Caffe's distribution: every offset of the 5 x 5 grid is drawn, mirror about half the time
    hs, ws, ms = zip(*seen)
    assert set(hs) == set(ws) == set(range(SIZE - CROP + 1))
    assert 0.35 < np.mean(ms) < 0.65


def test_test_phase_takes_the_centre_crop(db, tmp_path):
    """As the paper's validation net: TEST phase, mirror: false (Caffe mirrors in any phase when asked)."""
    _, mean_path, images, _ = db
    mean = read_mean(str(mean_path)).astype(np.float32)
    (data, _), = forward(db, tmp_path, phase="TEST", batches=1, mirror=False, transform_threads=4)
    c = (SIZE - CROP) // 2
    for i in range(BATCH):
        want = ((images[i].astype(np.float32) - mean) * np.float32(0.5))[:, c:c + CROP, c:c + CROP]
        assert np.array_equal(data[i], want)
