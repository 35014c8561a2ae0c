"""The CUDA build's inputs, without compiling: the patch step's GPU fixes on the real sdist, and the
build script's refusal of bad GPU options. (`make check-gpu-build` compiles and links it all.)"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transfer import REPO

sys.path.insert(0, str(REPO / "caffe"))
import patch_tree  # noqa: E402
import tinyrun  # noqa: E402

NO_KERNELS = {"relu6": "ReLU6Layer", "hardswish": "HardSwishLayer", "hardsigmoid": "HardSigmoidLayer",
              "pixelshuffle": "PixelShuffleLayer", "maxunpool": "MaxUnPoolLayer", "upsample": "UpsampleLayer"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    tree = tinyrun.sdist_tree(tmp_path_factory.mktemp("sdist"))
    (tree / "python" / "caffe").mkdir(parents=True)   # patch_tree copies into the tree; python/ unused here
    return tree


def test_gpu_fixes_apply_once_and_only_where_needed(tree):
    layers = tree / "src" / "caffe" / "layers"
    before = {p.name: p.read_text() for p in layers.glob("*")}
    done = patch_tree.patch_tree(tree)
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
    changed = {name for name, text in before.items() if (layers / name).read_text() != text}
    # those six, the proposal layer, the cuDNN convolution (patch_gpu_speed.py) and the Data layers'
    # batch transform (patch_data.py); never another layer with its own .cu
    assert changed == {f"{s}_layer.cpp" for s in NO_KERNELS} | {
        "proposal_layer.cu", "cudnn_conv_layer.cpp", "cudnn_conv_layer.cu", "data_layer.cpp",
        "base_data_layer.cpp", "base_data_layer.cu"}
    assert any("ProposalLayer::Backward_gpu" in line for line in done)
    assert patch_tree.gpu_via_cpu(tree) == []                   # a second run changes nothing
    assert not [line for line in patch_tree.patch_tree(tree) if "layers/" in line]



def test_batch_transform_edits_the_data_layer_whole_or_not_at_all(tree, tmp_path):
    patch_tree.patch_tree(tree)   # idempotent: whatever ran before, the tree is patched once
    layer = (tree / "src/caffe/layers/data_layer.cpp").read_text()
    assert layer.count("keyed_->Batch(items, images_done_, top_data, transform_threads_);") == 1
    assert "data_transformer_->Transform(datum" not in layer          # the sequential loop is gone
    assert (tree / "src/caffe/util/keyed_transform.cpp").is_file()
    assert "optional uint32 transform_threads = 13" in (tree / "src/caffe/proto/caffe.proto").read_text()
    # a Data layer of another shape (BVLC master reads its cursor itself) is left alone, every file of it
    other = tmp_path / "other"
    for rel in ("src/caffe/proto/caffe.proto", "include/caffe/layers/data_layer.hpp"):
        (other / rel).parent.mkdir(parents=True, exist_ok=True)
        (other / rel).write_text((tree / rel).read_text().replace("transform_threads", "x"))
    (other / "src/caffe/layers").mkdir(parents=True)
    (other / "src/caffe/layers/data_layer.cpp").write_text("// a different Data layer\n")
    before = {p: p.read_text() for p in other.rglob("*") if p.is_file()}
    (line,) = patch_tree.keyed_data_layer(other)
    assert "sequential transform kept" in line
    assert {p: p.read_text() for p in other.rglob("*") if p.is_file()} == before


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
