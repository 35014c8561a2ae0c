"""`transfer doctor` passes on this machine's Caffe and fails clearly on a broken one."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from transfer import REPO
from transfer.caffe import doctor, gpu
from transfer.core.errors import TransferError

# nvidia-smi as a node with one H100 and the given driver shows it (the query and the header).
FAKE_SMI = """#!/bin/sh
case "$*" in
  *--query-gpu=compute_cap*) echo "9.0" ;;
  *--query-gpu*) echo "0, NVIDIA H100 80GB HBM3, {driver}, 81559, GPU-00000000-0000-0000-0000-000000000000" ;;
  *) echo "| NVIDIA-SMI {driver}      Driver Version: {driver}      CUDA Version: {cuda}     |" ;;
esac
"""


def fake_nvidia_smi(tmp_path: Path, driver: str, cuda: str) -> str:
    """A PATH whose nvidia-smi is FAKE_SMI for `driver`."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI.format(driver=driver, cuda=cuda))
    smi.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def run_doctor(**env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "transfer", "doctor"], env=full,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_doctor_passes_here():
    proc = run_doctor()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "all checks passed" in out
    assert "caffe root :" in out and "source     :" in out and "mode       :" in out
    # the build's patch series, every patch of caffe/patches by name (this is a build of the sdist)
    series = sorted(p.name for p in (REPO / "caffe" / "patches").glob("*.patch"))
    assert f"patches    : {len(series)} of {len(series)} applied (sdist tree)" in out, out
    for name in series:
        assert f"  {name}  sha256 " in out, name
    for name in doctor.PAPER_LAYERS:
        assert name in out


@pytest.mark.requires_caffe
def test_doctor_fails_on_empty_root(tmp_path):
    proc = run_doctor(CAFFE_ROOT=str(tmp_path))
    assert proc.returncode != 0
    assert "source     : external" in proc.stdout
    assert "FAIL caffe binary" in proc.stdout and "build/tools" in proc.stdout
    assert "FAIL pycaffe" in proc.stdout
    assert "fix: run `make caffe`" in proc.stdout


def test_doctor_fails_on_missing_root(tmp_path):
    missing = tmp_path / "nonexistent"
    proc = run_doctor(CAFFE_ROOT=str(missing))
    assert proc.returncode != 0
    assert f"{missing} is not a directory" in proc.stdout


def test_bad_build_info_names_the_file(tmp_path: Path):
    (tmp_path / "BUILD_INFO").write_text("{not json")
    with pytest.raises(TransferError, match="BUILD_INFO is not valid JSON"):
        doctor.root_info(tmp_path)
    assert doctor.root_info(tmp_path / "other") == {"source": "external"}


def test_doctor_lists_the_patch_series_as_built():
    info = {"patches": {"mode": "foreign", "series": [
        {"name": "0001-a.patch", "sha256": "ab" * 32, "applied": True},
        {"name": "0002-b.patch", "sha256": "cd" * 32, "applied": False, "reason": "hunk 1 of x.cpp: ..."}]}}
    assert doctor.patch_lines(info) == [
        "patches    : 1 of 2 applied (foreign tree)",
        f"  0001-a.patch  sha256 {'ab' * 6}  applied",
        f"  0002-b.patch  sha256 {'cd' * 6}  NOT APPLIED: hunk 1 of x.cpp: ..."]
    assert doctor.patch_lines({"source": "external"})[0].startswith("patches    : none recorded")


def test_driver_against_the_builds_cuda():
    cuda13 = gpu.Build(gpu=True, cuda="13.0.88", cudnn="9.13.0")
    assert gpu.driver_problem(cuda13, "580.65.06") is None
    why, fix = gpu.driver_problem(cuda13, "550.54.15", "12.4")
    assert why == ("the NVIDIA driver 550.54.15 (it supports CUDA up to 12.4) is too old for this Caffe, built "
                   "with CUDA 13.0.88, which needs driver 580 or newer")
    assert fix.startswith("update the NVIDIA driver to 580 or newer") and "CUDA 12 toolkit" in fix
    assert gpu.driver_problem(gpu.Build(gpu=True, cuda="12.8"), "550.54.15") is None
    assert gpu.driver_problem(gpu.Build(gpu=True, cuda="12.8"), "470.82.01") is not None
    assert gpu.driver_problem(gpu.Build(gpu=True, cuda=None), "470.82.01") is None   # unknown: nothing to say


@pytest.mark.requires_caffe   # doctor runs the check build's caffe binary
def test_doctor_says_the_driver_is_too_old(tmp_path, check_root):
    proc = run_doctor(CAFFE_ROOT=str(check_root), PATH=fake_nvidia_smi(tmp_path, "550.54.15", "12.4"))
    assert proc.returncode != 0
    assert "gpus       : 0: NVIDIA H100 80GB HBM3, driver 550.54.15" in proc.stdout
    assert ("FAIL driver: the NVIDIA driver 550.54.15 (it supports CUDA up to 12.4) is too old for this Caffe, "
            "built with CUDA 13.0") in proc.stdout, proc.stdout
    assert "fix: update the NVIDIA driver to 580 or newer" in proc.stdout


@pytest.mark.requires_caffe
def test_training_refuses_a_too_old_driver_before_caffe_starts(tmp_path, check_root, monkeypatch):
    monkeypatch.setenv("CAFFE_ROOT", str(check_root))
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path, "535.104.05", "12.2"))
    with pytest.raises(TransferError, match=r"driver 535\.104\.05 .* needs driver 580 or newer: update"):
        gpu.attempt_record(0)
