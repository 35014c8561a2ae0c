"""`transfer doctor` passes on this machine's Caffe and fails clearly on a broken one."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from transfer import REPO
from transfer.caffe import doctor
from transfer.core.errors import TransferError


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
