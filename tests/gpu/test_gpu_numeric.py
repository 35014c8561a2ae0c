"""GPU tier, numbers: the GPU computes what the CPU computes, fp32 keeps TF32 off, TF32 really switches
on, and the build a GPU node uses has cuDNN.

One forward and backward pass of a small net (tests/gpu/numeric_net.py: max pooling, convolutions
two of them grouped, LRN, average pooling, inner product, softmax loss; no dropout) with the same
weights, input and labels on the CPU, on the GPU with cuDNN (`engine: CUDNN`) and on the GPU with
Caffe's own kernels (`engine: CAFFE`). Each array (every blob's output, the input's gradient, every
parameter's gradient) is compared as max|a - b| / max|b|:
  - fp32: every pair within TOL_FP32 (1e-4; fp32 rounding in another summation order is about 1e-6);
  - tf32 (`--precision tf32`, the same environment `transfer train` gives caffe): cuDNN against the
    CPU at least TF32_FACTOR (10) times fp32's difference on a GPU with TF32 (compute capability 8.0
    or newer: TF32 rounds the operands of each product to 10 mantissa bits, about 5e-4), and within
    TOL_TF32 (3e-2) for both engines.
On the CPU variant (TIER_DEVICE=cpu) each "GPU" run is a CPU run: the comparisons are CPU against CPU,
which the test says, and TF32 must change nothing there.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import summary

from transfer.caffe import gpu as gpu_info
from transfer.caffe import precision
from transfer.caffe.precision import PrecisionSpec

HERE = Path(__file__).resolve().parent
TOL_FP32 = 1e-4
TOL_TF32 = 3e-2
TF32_FACTOR = 10.0


def _compute_capability(device: int) -> float | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--id={device}", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        return float(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _run(tmp: Path, device: int | None, engine: str, prec: str) -> dict[str, np.ndarray]:
    out = tmp / f"{device}-{engine}-{prec}.npz"
    cmd = [sys.executable, str(HERE / "numeric_net.py"), "--out", str(out), "--engine", engine]
    if device is not None:
        cmd += ["--gpu", str(device)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=precision.caffe_environ(PrecisionSpec(prec), dict(os.environ)))
    assert proc.returncode == 0, f"{' '.join(cmd)} ({prec}):\n{proc.stdout}{proc.stderr[-3000:]}"
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[float, str]:
    """The largest max|a - b| / max|b| over the arrays, and which array it is ("bit-identical": none differs)."""
    assert a.keys() == b.keys()
    worst = (0.0, "bit-identical")
    for key in sorted(a):
        scale = float(np.abs(b[key]).max()) or 1.0
        d = float(np.abs(a[key].astype(np.float64) - b[key]).max()) / scale
        if d > worst[0]:
            worst = (d, key)
    return worst


@pytest.fixture(scope="module")
def runs(tmp_path_factory, device):
    """(label -> arrays) for the CPU and the two GPU engines, fp32 and tf32."""
    tmp = tmp_path_factory.mktemp("numeric")
    gpu_engines = {"cudnn": "CUDNN", "caffe": "CAFFE"} if device is not None else \
        {"cudnn": "DEFAULT", "caffe": "DEFAULT"}   # the CPU variant: both "GPU" runs are CPU runs
    out = {"cpu": _run(tmp, None, "DEFAULT", "fp32")}
    for prec in ("fp32", "tf32"):
        for name, engine in gpu_engines.items():
            out[f"{name}-{prec}"] = _run(tmp, device, engine, prec)
    return out


def _where(device: int | None) -> str:
    return "" if device is not None else " (CPU variant: CPU against CPU)"


def test_fp32_gpu_cudnn_gpu_caffe_and_cpu_agree(runs, device):
    pairs = [("cudnn-fp32", "cpu"), ("caffe-fp32", "cpu"), ("cudnn-fp32", "caffe-fp32")]
    found = {pair: difference(runs[pair[0]], runs[pair[1]]) for pair in pairs}
    for (a, b), (d, key) in found.items():
        summary.record("numeric", f"fp32 {a} vs {b}{_where(device)}", f"{d:.2e} ({key})", d <= TOL_FP32,
                       f"tolerance {TOL_FP32:g}")
    bad = {pair: v for pair, v in found.items() if v[0] > TOL_FP32}
    assert not bad, f"fp32 differences above {TOL_FP32:g}: {bad}"


def test_tf32_differs_measurably_more_than_fp32(runs, device):
    cap = _compute_capability(device) if device is not None else None
    fp32, _ = difference(runs["cudnn-fp32"], runs["cpu"])
    tf32, key = difference(runs["cudnn-tf32"], runs["cpu"])
    caffe_tf32, caffe_key = difference(runs["caffe-tf32"], runs["cpu"])
    summary.record("numeric", f"tf32 caffe vs cpu{_where(device)}", f"{caffe_tf32:.2e} ({caffe_key})",
                   caffe_tf32 <= TOL_TF32, f"tolerance {TOL_TF32:g}")
    assert caffe_tf32 <= TOL_TF32, (caffe_tf32, caffe_key)
    if device is None or cap is None or cap < 8.0:
        why = "the CPU computes fp32 whatever is asked" if device is None else \
            f"GPU {device} (compute capability {cap}) has no TF32"
        summary.record("numeric", f"tf32 cudnn vs cpu{_where(device)}", f"{tf32:.2e} ({key})",
                       tf32 <= TOL_FP32, f"no TF32 here: {why}; must equal fp32's")
        assert tf32 <= TOL_FP32, f"TF32 changed results where there is none ({why}): {tf32} in {key}"
        return
    ok = TF32_FACTOR * fp32 < tf32 <= TOL_TF32
    summary.record("numeric", "tf32 cudnn vs cpu", f"{tf32:.2e} ({key}), {tf32 / max(fp32, 1e-30):.0f}x fp32's",
                   ok, f"must exceed {TF32_FACTOR:g}x fp32's {fp32:.1e}, within {TOL_TF32:g}")
    assert tf32 > TF32_FACTOR * fp32, (
        f"--precision tf32 changed the results by {tf32:.2e} ({key}), not more than {TF32_FACTOR:g} times "
        f"fp32's {fp32:.2e}: TF32 did not switch on (or fp32 did not keep it off)")
    assert tf32 <= TOL_TF32, (tf32, key)


def cudnn_problem(build: gpu_info.Build, environ: dict[str, str]) -> str:
    """Why the tier must fail on this GPU build ("" if it may run): no cuDNN, and CAFFE_CUDNN=0 not asked."""
    if not build.gpu or build.cudnn or environ.get("CAFFE_CUDNN") == "0":
        return ""
    return (f"the CUDA build in use ({build.describe()}) has no cuDNN, so the tier would not test the "
            "convolution the paper's runs use: build it with cuDNN (`CAFFE_GPU=1 CAFFE_CUDNN=1 make caffe`), "
            "or run `make test-gpu CAFFE_CUDNN=0` to test the build without it on purpose")


def test_gpu_build_has_cudnn_unless_asked_not_to(device):
    if device is None:   # the CPU build has no cuDNN to check: the rule itself, on described builds
        without = gpu_info.Build(gpu=True, cuda="13.0.88", cudnn=None)
        assert "has no cuDNN" in cudnn_problem(without, {})
        assert cudnn_problem(without, {"CAFFE_CUDNN": "0"}) == ""
        assert cudnn_problem(gpu_info.Build(gpu=True, cuda="13.0.88", cudnn="9.13.0"), {}) == ""
        summary.record("build", "cuDNN rule (CPU variant)", "checked on described builds", True)
        return
    build = gpu_info.current_build()
    problem = cudnn_problem(build, dict(os.environ))
    summary.record("build", "cuDNN", build.cudnn or "none", not problem,
                   "CAFFE_CUDNN=0 asked" if os.environ.get("CAFFE_CUDNN") == "0" else "")
    assert not problem, problem
