"""The CUDA build's inputs, without compiling: the patch series' GPU fixes on the real sdist, and the
build script's refusal of bad GPU options. (`make check-gpu-build` compiles and links it all; the
series as a whole: tests/test_patches.py.)"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transfer import REPO

import tinyrun  # noqa: E402

NO_KERNELS = {"relu6": "ReLU6Layer", "hardswish": "HardSwishLayer", "hardsigmoid": "HardSigmoidLayer",
              "pixelshuffle": "PixelShuffleLayer", "maxunpool": "MaxUnPoolLayer", "upsample": "UpsampleLayer"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """The sdist with the patch series applied."""
    return tinyrun.patched_sdist(tmp_path_factory.mktemp("series"))[1]


def test_gpu_fixes_define_what_the_cuda_build_needs_and_leave_cpu_only_alone(tree):
    """(Which files the series changes, and nothing else: tests/test_patches.py.)"""
    layers = tree / "src" / "caffe" / "layers"
    proposal = (layers / "proposal_layer.cu").read_text()
    assert proposal.count("ProposalLayer<Dtype>::Backward_gpu(") == 1
    assert proposal.index("ProposalLayer<Dtype>::Backward_gpu(") < proposal.index(
        "INSTANTIATE_LAYER_GPU_FUNCS(ProposalLayer)")
    for stem, cls in NO_KERNELS.items():
        text = (layers / f"{stem}_layer.cpp").read_text()
        assert not (layers / f"{stem}_layer.cu").exists()
        assert f"STUB_GPU({cls});\n" in text                        # the CPU_ONLY build: unchanged
        assert f"void {cls}<Dtype>::Forward_gpu(" in text and "Forward_cpu(bottom, top);" in text
        assert f"void {cls}<Dtype>::Backward_gpu(" in text and "Backward_cpu(top, propagate_down, bottom);" in text
        assert text.index("#else") < text.index("Forward_gpu(") < text.index("#endif", text.index("#else"))


def test_cuda_units_include_every_cu_file_once_and_keep_clashing_ones_apart(tree, tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    import cuda_unity  # noqa: PLC0415
    copy = tmp_path / "tree"
    shutil.copytree(tree / "src", copy / "src")
    def cu_files() -> list[Path]:   # what the build compiles: not Caffe's own tests
        return sorted(p.relative_to(copy) for p in copy.rglob("*.cu") if "test" not in p.parent.name)
    before = cu_files()
    lines = cuda_unity.unite(copy, 2)
    units = sorted((copy / "src/caffe/util").glob("cuda_unity_*.cu"))
    assert len(units) == 2 and len(lines) == 3
    included = [(u.parent / line.split('"')[1]).resolve() for u in units for line in u.read_text().splitlines()
                if line.startswith("#include")]
    alone = copy / "src/caffe/util/bbox_util.cu"          # repeats softmax_layer.cu's helper kernels
    assert alone.is_file() and "bbox_util.cu: its own unit" in lines[-1]
    assert sorted(p.relative_to(copy.resolve()) for p in included) == [
        Path(f"{p}.in") for p in before if p.name != "bbox_util.cu"]
    assert all(p.is_file() for p in included) and len(set(included)) == len(included)
    assert cu_files() == sorted(
        [Path("src/caffe/util/bbox_util.cu")] + [u.relative_to(copy) for u in units])

@pytest.mark.parametrize("env, message", [
    ({"CAFFE_GPU": "1", "CAFFE_CUDA": "conda"}, "CAFFE_CUDA='conda' must be auto, system or pypi"),
    ({"CAFFE_GPU": "1", "CAFFE_CUDNN": "yes"}, "CAFFE_CUDNN='yes' must be auto, 0 or 1"),
    ({"CAFFE_GPU": "1", "CAFFE_CUDA_ARCHS": "sm_90"}, "CAFFE_CUDA_ARCHS='sm_90' must be SM numbers"),
    ({"CAFFE_PYTHON": "no"}, "CAFFE_PYTHON='no' must be 0 or 1"),
    ({"CAFFE_GPU": "1", "CAFFE_CUDA_UNITY": "all"}, "CAFFE_CUDA_UNITY='all' must be a number of units"),
])
def test_build_script_refuses_bad_gpu_options(env, message):
    venv = Path(sys.prefix)
    proc = subprocess.run([str(REPO / "scripts" / "build-caffe.sh")], capture_output=True, text=True,
                          env={**os.environ, "VENV": str(venv), "PY": sys.executable, **env}, timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
