"""benchmarks/bench_gpu.py on the CPU build, at a tiny size: the code path `make test-gpu` runs on a GPU node,
and its figures file read back by `transfer plan simulate --figures`."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from transfer import REPO
from transfer.plan import speed

import tinyrun  # noqa: E402

pytestmark = pytest.mark.requires_caffe


def test_cpu_run_writes_figures_the_simulator_reads(tmp_path):
    figures = tmp_path / "figures.yaml"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--cpu", "--batch", "1",
                           "--iterations", "1", "--nets", "1,2", "--train-iterations", "3", "--images", "16",
                           "--work", str(tmp_path / "work"), "--figures-out", str(figures)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| Caffe, CPU only, fp32 |" in proc.stdout and "`caffe train` from an LMDB" in proc.stdout
    # Every pooling and LRN layer of CaffeNet timed with both engines.
    rows = re.findall(r"^\| (\w+) \((Pooling|LRN)\) \| ([0-9.]+) \| ([0-9.]+) \|", proc.stdout, re.M)
    assert [r[0] for r in rows] == ["pool1", "norm1", "pool2", "norm2", "pool5"], proc.stdout
    assert all(float(r[2]) >= 0 and float(r[3]) >= 0 for r in rows)   # parsed numbers; a duration may round to 0
    got = speed.load_figures(figures)
    assert got.alone_sec_per_iter >= 0 and set(got.throughput) == {1, 2}
    assert "caffe train from an LMDB, batch 1" in got.sources["alone"]
    sim = tinyrun.run_cli("plan", "simulate", "--plan", "tiny", "--gpus", "2", "--figures", str(figures))
    assert sim.returncode == 0, sim.stderr
    assert "makespan" in sim.stdout


def test_figures_out_needs_one_net_alone(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--cpu", "--nets", "2,3",
                           "--figures-out", str(tmp_path / "f.yaml")], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "needs one net alone" in proc.stderr
    assert not (tmp_path / "f.yaml").exists()
