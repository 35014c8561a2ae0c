"""The GPU side that can be checked without a GPU: what a build is, the tiny forward/backward of
`transfer doctor` (run here on the CPU), a GPU request refused clearly by a CPU-only build, and
training from existing init files with a Caffe whose pycaffe cannot load."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from transfer.caffe import gpu
from transfer.core.errors import TransferError

import tinyrun  # noqa: E402



def _root_with_info(tmp_path: Path, info: dict) -> Path:
    (tmp_path / "BUILD_INFO").write_text(json.dumps(info))
    return tmp_path


def test_build_info_of_a_cuda_build_is_described(tmp_path):
    root = _root_with_info(tmp_path, {"options": {"gpu": True}, "cuda": {
        "toolkit": "pypi", "version": "13.0.88", "cudnn": "9.13.0", "archs": ["75-real", "90-real", "90-virtual"]}})
    build = gpu.build_of(root)
    assert build.gpu is True and build.cuda == "13.0.88" and build.cudnn == "9.13.0"
    assert build.describe() == "GPU (CUDA 13.0.88, cuDNN 9.13.0, archs 75-real 90-real 90-virtual, toolkit pypi)"
    (tmp_path / "b").mkdir()
    no_cudnn = _root_with_info(tmp_path / "b", {"options": {"gpu": True}, "cuda": {"version": "12.8", "cudnn": None}})
    assert gpu.build_of(no_cudnn).describe() == "GPU (CUDA 12.8, no cuDNN)"


def test_cpu_build_and_unknown_external_build(tmp_path):
    assert gpu.build_of(_root_with_info(tmp_path, {"options": {"gpu": False}})).describe() == "CPU only"
    empty = tmp_path / "external"
    empty.mkdir()
    assert gpu.build_of(empty).gpu is None
    (tmp_path / "BUILD_INFO").write_text("{oops")
    with pytest.raises(TransferError, match="BUILD_INFO is not valid JSON"):
        gpu.build_of(tmp_path)


def test_visible_gpus_says_why_there_are_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no nvidia-smi
    devices, why = gpu.visible_gpus()
    assert devices == [] and "nvidia-smi not found" in why


@pytest.mark.requires_caffe
def test_tiny_forward_backward_runs_on_the_cpu():
    run = gpu.tiny_forward_backward(None)
    assert run.ok, run.detail
    # `caffe time` ran both passes and its average was parsed; a fast CPU reports "0 ms", so the
    # value itself says nothing about the code (timings belong to benchmarks/).
    assert run.where == "CPU" and run.ms is not None and run.ms >= 0


@pytest.mark.requires_caffe
def test_doctor_reports_mode_and_gpu_line():
    proc = tinyrun.run_cli("doctor", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = gpu.current_build()
    assert f"mode       : {build.describe()}" in proc.stdout
    devices, why = gpu.visible_gpus()
    if not devices:   # this machine: the GPU run is skipped with its reason, and that is no failure
        assert f"skip gpu run: skipped: no GPU visible ({why})" in proc.stdout
    else:
        assert "ok   gpu run: GPU 0: forward+backward of a tiny net" in proc.stdout


@pytest.mark.requires_caffe
def test_gpu_training_with_a_cpu_only_build_is_refused_before_caffe_starts(tmp_path, tmp_path_factory):
    if gpu.current_build().gpu is not False:
        pytest.skip("the Caffe in use is not a CPU-only build")
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory))
    net = plan.net("base-half0A")
    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--gpu", "0")
    assert res.returncode != 0
    assert "is a CPU-only build and cannot train on a GPU" in res.stderr
    assert "CAFFE_GPU=1 make caffe" in res.stderr
    assert not net.run.log_files()


@pytest.mark.requires_caffe
def test_train_needs_only_the_caffe_binary_once_surgery_is_done(tmp_path, tmp_path_factory):
    """Surgery (pycaffe) on one machine, training on one whose pycaffe cannot load."""
    from transfer.caffe.env import caffe_root
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory), solver={"max_iter": 20})
    net = plan.net("base-half0A")
    res = tinyrun.run_cli("surgery", net.name, "--plan", str(plan.path))
    assert res.returncode == 0, res.stdout + res.stderr
    # A Caffe root with the binary and caffe_pb2 but a _caffe.so that cannot load (another Python's).
    real = caffe_root()
    root = tmp_path / "caffe-no-pycaffe"
    (root / "python" / "caffe").mkdir(parents=True)
    os.symlink(real / "build", root / "build")
    shutil.copytree(real / "python" / "caffe" / "proto", root / "python" / "caffe" / "proto")
    (root / "python" / "caffe" / "__init__.py").write_text("raise ImportError('_caffe.so: undefined symbol')\n")
    (root / "BUILD_INFO").write_text((real / "BUILD_INFO").read_text())
    env = {"CAFFE_ROOT": str(root)}
    doctor = tinyrun.run_cli("doctor", env=env, timeout=180)
    assert "FAIL pycaffe" in doctor.stdout   # it really cannot load
    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--cpu", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert net.run.is_done()


@pytest.mark.parametrize("env, want", [
    ({"GPUS": "2,3"}, "run --plan tiny --gpus 2,3"),
    ({"CUDA_VISIBLE_DEVICES": "5,7"}, "run --plan tiny --gpus 0,1"),   # an allocation's GPUs count from 0
])
def test_run_plan_script_passes_the_gpus_on(env, want):
    from transfer import REPO
    base = {k: v for k, v in os.environ.items() if k not in ("GPUS", "CUDA_VISIBLE_DEVICES")}
    proc = subprocess.run([str(REPO / "scripts" / "run-plan.sh"), "tiny"], capture_output=True, text=True,
                          env={**base, "TRANSFER": "echo", **env}, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == want, proc.stdout + proc.stderr


def test_node_scripts_without_a_gpu_say_so():
    from transfer import REPO
    base = {k: v for k, v in os.environ.items() if k not in ("GPUS", "CUDA_VISIBLE_DEVICES")}
    if not shutil.which("nvidia-smi", path="/usr/bin:/bin"):
        proc = subprocess.run([str(REPO / "scripts" / "run-plan.sh"), "tiny"], capture_output=True, text=True,
                              env={**base, "TRANSFER": "echo", "PATH": "/usr/bin:/bin"}, timeout=30)
        assert proc.returncode == 2 and "no GPU found" in proc.stderr
    proc = subprocess.run([str(REPO / "scripts" / "train-net.sh"), "base-half0A", "tiny", "3"], capture_output=True,
                          text=True, env={**base, "TRANSFER": "echo"}, timeout=30)
    assert proc.stdout.strip() == "train base-half0A --plan tiny --gpu 3"


def test_cudnn_algorithm_lines_of_both_forms_are_read(tmp_path):
    from transfer.caffe import cudnn_algos
    log = tmp_path / "caffe.log"
    log.write_text(
        "I1202 01:00:00.1 7 net.cpp:100] Creating Layer conv1\n"
        "I1202 01:00:00.2 7 cudnn_conv_layer.cpp:300] cudnn_conv_algos layer=conv1 phase=TRAIN input=32x3x56x56 "
        "group=1 precision=fp32 deterministic=1 bound_mib=512 fallback=none fwd_algo=1 fwd_math=fma fwd_ws=0 "
        "fwd_by=heuristic bwd_filter_algo=1 bwd_filter_math=fma bwd_filter_ws=4096 bwd_filter_by=heuristic "
        "bwd_data_algo=1 bwd_data_math=fma bwd_data_ws=0 bwd_data_by=heuristic\n"
        "I1202 01:00:00.3 7 cudnn_conv_layer.cpp:200] cuDNN convolution conv2 input 32x24x13x13 group 2 (tf32, "
        "measured, workspace bound 512 MiB): forward algo 6 (0.25 ms, 12 MiB, math 1); backward filter algo 1 "
        "(1.5 ms, 0 MiB, math 3, deterministic); backward data none fits: fallback\n")
    first, second = cudnn_algos.record(log)["cudnn_algos"]
    assert first["layer"] == "conv1" and first["phase"] == "TRAIN" and first["bwd_filter_ws"] == "4096"
    assert (first["deterministic"], first["fallback"], first["fwd_by"]) == ("1", "none", "heuristic")
    assert (second["layer"], second["input"], second["group"], second["precision"]) == ("conv2", "32x24x13x13", "2", "tf32")
    assert (second["fwd_algo"], second["fwd_math"], second["bwd_filter_algo"]) == ("6", "1", "1")
    assert (second["bwd_data_algo"], second["fallback"]) == ("fallback", "none_fits")
    empty = tmp_path / "cpu.log"
    empty.write_text("I1202 01:00:00.1 7 net.cpp:100] Creating Layer conv1\n")
    assert cudnn_algos.record(empty) == {} and cudnn_algos.record(tmp_path / "missing.log") == {}
