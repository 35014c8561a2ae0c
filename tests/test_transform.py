"""The Data layer's batch transform (caffe/keyed_transform.hpp) through pycaffe on a real LMDB: the same
blobs whatever the thread count, each image's crop and mirror from the keyed stream, Caffe's arithmetic
(mean file, scale), Caffe's distribution of crops and mirrors, and the centre crop outside TRAIN; the
default thread count from the CPUs the process may use, and one thread when no other can start."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from transfer.data import synthetic
from transfer.data.build import build
from transfer.data.means import compute_mean, read_mean
from transfer.data.images import datum_array
from transfer.data.lmdb_store import iter_items, open_read

import tinyrun  # noqa: E402

pytestmark = pytest.mark.requires_caffe
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


def net_file(db, tmp_path: Path, mirror: bool = True, **data_param: object) -> Path:
    lmdb_dir, mean = db[0], db[1]
    return tinyrun.data_net(
        tmp_path / f"data-{abs(hash(tuple(data_param.items())))}-{mirror}.prototxt", lmdb_dir, BATCH,
        f'mirror: {str(mirror).lower()} crop_size: {CROP} mean_file: "{mean}" scale: 0.5', **data_param)


def forward(db, tmp_path: Path, phase: str = "TRAIN", batches: int = 3, seed: int | None = None,
            mirror: bool = True, **data_param: object) -> list[tuple[np.ndarray, np.ndarray]]:
    return tinyrun.data_batches(net_file(db, tmp_path, mirror, **data_param), batches, phase, seed)


def child(net: str, out: str, seed: int) -> None:
    """Run in a child process: three TRAIN batches of `net`, saved to `out`."""
    batches = tinyrun.data_batches(Path(net), 3, "TRAIN", seed)
    np.savez(out, **{f"{kind}{b}": arrays[k] for b, arrays in enumerate(batches)
                     for k, kind in enumerate(("data", "label"))})


def forward_in_child(net: Path, out: Path, seed: int, prefix: list[str], env: dict[str, str]) -> tuple[
        list[tuple[np.ndarray, np.ndarray]], str]:
    """(the batches, the glog output) of `child` run as `prefix` + python (e.g. taskset -c 0)."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_transform as t; "
            f"t.child({str(net)!r}, {str(out)!r}, {seed})")
    proc = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GLOG_logtostderr": "1", "GLOG_minloglevel": "0", **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(out)
    return [(got[f"data{b}"], got[f"label{b}"]) for b in range(3)], proc.stderr


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


@pytest.mark.skipif(shutil.which("taskset") is None, reason="no taskset (util-linux)")
def test_default_thread_count_is_the_cpus_the_process_may_use(db, tmp_path):
    """transform_threads unset (0): one thread on one CPU (taskset -c 0), logged once, and the same
    batches as four threads give."""
    one_cpu = str(sorted(os.sched_getaffinity(0))[0])
    batches, log = forward_in_child(net_file(db, tmp_path), tmp_path / "auto.npz", 11, ["taskset", "-c", one_cpu], {})
    assert log.count("batch transform: 1 thread(s) by default (CPU affinity 1, cgroup CPU quota") == 1, log
    assert "data: batch transform on 1 threads" in log
    four = forward(db, tmp_path, seed=11, transform_threads=4)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(batches, four))


def test_a_thread_that_cannot_start_leaves_the_transform_on_one_thread(db, tmp_path):
    """pthread_create fails in the prefetch thread (tests/shims: as at a thread limit): a warning,
    once; the run goes on, on one thread, with the batches four threads give."""
    cc = shutil.which("cc") or pytest.skip("no C compiler for the LD_PRELOAD shim")
    shim = tmp_path / "threads_only_from_main.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(shim), str(Path(__file__).parent / "shims" /
                    "threads_only_from_main.c"), "-ldl"], check=True, timeout=120)
    net = net_file(db, tmp_path, transform_threads=4)
    batches, log = forward_in_child(net, tmp_path / "shim.npz", 11, [], {"LD_PRELOAD": str(shim)})
    assert log.count("batch transform: cannot start a thread (") == 1, log
    assert "transforming on one thread from now on" in log
    four = forward(db, tmp_path, seed=11, transform_threads=4)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(batches, four))
