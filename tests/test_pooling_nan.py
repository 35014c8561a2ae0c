"""Max pooling on NaN input (caffe/patches/0013): forward and backward through pycaffe never write
outside a blob, the mask stays inside the input, and every window with a finite maximum gives
exactly Caffe's values and gradients. Each net runs in a child process with glibc's heap checks
on (MALLOC_CHECK_=3), so a write before a blob aborts it when the blob is freed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from transfer.caffe.env import import_caffe  # noqa: E402

pytestmark = pytest.mark.requires_caffe
SHAPE, KERNEL, STRIDE = (2, 3, 9, 9), 3, 2      # overlapping 3x3 windows, 4x4 of them
POOLED = (SHAPE[2] - KERNEL) // STRIDE + 1
ROUNDS = 20                                      # nets made, run and freed in one child


def net_text(with_mask: bool) -> str:
    tops = 'top: "pool" top: "mask"' if with_mask else 'top: "pool"'
    return f'''name: "pool" force_backward: true
layer {{ name: "data" type: "Input" top: "data"
        input_param {{ shape {{ {" ".join(f"dim: {d}" for d in SHAPE)} }} }} }}
layer {{ name: "pool" type: "Pooling" bottom: "data" {tops}
        pooling_param {{ pool: MAX kernel_size: {KERNEL} stride: {STRIDE} }} }}
'''


def inputs() -> tuple[np.ndarray, np.ndarray]:
    """(data, top diff): distinct finite values, one window all NaN, one all -inf, one mixed; small
    integer gradients, so that every sum of them is exact whatever its order."""
    rng = np.random.default_rng(7)
    data = rng.permutation(np.prod(SHAPE)).reshape(SHAPE).astype(np.float32) - 100
    data[0, 0, 0:3, 0:3] = np.nan                 # window (0, 0): all NaN; (0, 1) and (1, 0) mixed
    data[1, 2, 6:9, 6:9] = -np.inf                # window (3, 3): all -inf
    data[0, 1, 2, 4] = np.nan                     # one NaN among finite values
    top_diff = rng.integers(1, 8, size=(SHAPE[0], SHAPE[1], POOLED, POOLED)).astype(np.float32)
    return data, top_diff


def reference(data: np.ndarray, top_diff: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top, mask, bottom diff) by Caffe's loop: strict > from -FLT_MAX in row-major order; a window
    where nothing compares greater takes its first element (the patch)."""
    top = np.empty(top_diff.shape, np.float32)
    mask = np.empty(top_diff.shape, np.int64)
    diff = np.zeros(SHAPE, np.float32)
    for n, c, ph, pw in np.ndindex(*top_diff.shape):
        best, index = np.float32(-np.finfo(np.float32).max), -1
        for h in range(ph * STRIDE, ph * STRIDE + KERNEL):
            for w in range(pw * STRIDE, pw * STRIDE + KERNEL):
                if data[n, c, h, w] > best:
                    best, index = data[n, c, h, w], h * SHAPE[3] + w
        if index < 0:
            index = ph * STRIDE * SHAPE[3] + pw * STRIDE
            best = data[n, c, ph * STRIDE, pw * STRIDE]
        top[n, c, ph, pw], mask[n, c, ph, pw] = best, index
        diff[n, c, index // SHAPE[3], index % SHAPE[3]] += top_diff[n, c, ph, pw]
    return top, mask, diff


def child(net_path: str, out_path: str) -> None:
    """Run in the child: ROUNDS nets made, run forward and backward, and freed; the first one's
    blobs saved to `out_path`."""
    caffe = import_caffe()
    caffe.set_mode_cpu()
    data, top_diff = inputs()
    for i in range(ROUNDS):
        net = caffe.Net(net_path, caffe.TRAIN)
        net.blobs["data"].data[...] = data
        net.forward()
        net.blobs["pool"].diff[...] = top_diff
        net.backward()
        if i == 0:
            blobs = {"top": net.blobs["pool"].data.copy(), "diff": net.blobs["data"].diff.copy()}
            if "mask" in net.blobs:
                blobs["mask"] = net.blobs["mask"].data.copy()
            np.savez(out_path, **blobs)
        del net


@pytest.mark.parametrize("with_mask", [False, True], ids=["mask-inside", "mask-as-top"])
def test_nan_windows_never_write_outside_the_blob_and_finite_ones_are_unchanged(tmp_path, with_mask):
    net_path = tmp_path / "pool.prototxt"
    net_path.write_text(net_text(with_mask))
    out = tmp_path / "out.npz"
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_pooling_nan as t; "
            f"t.child({str(net_path)!r}, {str(out)!r})")
    env = {**os.environ, "MALLOC_CHECK_": "3", "MALLOC_PERTURB_": "165", "GLOG_minloglevel": "2"}
    for run in range(3):   # the corruption, where there is one, need not show on every run
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, f"run {run}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    got = np.load(out)
    data, top_diff = inputs()
    top, mask, diff = reference(data, top_diff)
    nan_window = np.isnan(top)
    assert nan_window[0, 0, 0, 0] and nan_window.sum() == 1          # only the all-NaN window gives NaN
    assert np.array_equal(got["top"], top, equal_nan=True)
    assert got["top"][1, 2, 3, 3] == -np.inf                          # the all -inf window: its value
    assert np.array_equal(got["diff"], diff)                          # every gradient, exactly
    if with_mask:
        assert np.array_equal(got["mask"], mask.astype(np.float32))
        assert got["mask"].min() >= 0 and got["mask"].max() < SHAPE[2] * SHAPE[3]
    # windows with a finite maximum: Caffe's own answer, which needs no patch
    finite = np.isfinite(top)
    assert finite.sum() == top.size - 2
    assert np.array_equal(got["top"][finite], top[finite])
