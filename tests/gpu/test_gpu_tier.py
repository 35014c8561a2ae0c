"""GPU tier: the tiny plan trained end to end on GPU 0 (surgery, AnB, BnB, AnB+), kill -9 during a
GPU run then resume, and the device record of each attempt. `caffe time` of the paper's CaffeNet is
benchmarks/bench_gpu_caffenet.py (run by `make test-gpu` after these tests)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import tinyrun

from transfer import REPO
from transfer.plan.model import LAYERS


def _where(device: int | None) -> list[str]:
    return ["--cpu"] if device is None else ["--gpus", str(device)]


@pytest.fixture(scope="module")
def gpu_plan(tmp_path_factory, device):
    data = tinyrun.shared_data(tmp_path_factory)
    plan = tinyrun.write_plan_copy(tmp_path_factory.mktemp("gpuplan"), data)
    res = tinyrun.run_cli("run", "--plan", str(plan.path), *_where(device), "--jobs", "1", timeout=2400)
    return plan, res


def test_tiny_plan_trains_end_to_end(gpu_plan, device):
    from transfer.caffe.caffemodel import identical_layers
    plan, res = gpu_plan
    assert res.returncode == 0, res.stdout + res.stderr
    kinds = {n.treatment for n in plan.nets}
    assert len(kinds) >= 3, kinds    # base, frozen transfer (AnB, BnB) and fine-tuned (AnB+)
    for net in plan.nets:
        run = net.run
        assert run.is_done(), net.name
        assert run.surgery_record.is_file() and run.init_weights.is_file()
        done = run.done_record()
        assert done["frozen_check"]["identical"] is True, net.name
        same = identical_layers(run.init_weights, run.final_weights)
        assert [name for name in LAYERS if same[name]] == LAYERS[:net.frozen], net.name
        solver = run.net_copy("solver").read_text()
        assert ("solver_mode: GPU" if device is not None else "solver_mode: CPU") in solver
        attempt = run.attempts()[-1]
        assert attempt["mode"] == ("GPU" if device is not None else "CPU")
        if device is not None:   # the device, its driver and the build's CUDA, for the record
            assert attempt["device"] and attempt["driver"] and attempt["cuda_build"], attempt
            log = run.log_files()[-1].read_text()
            assert f"Using GPUs {device}" in log, log[:2000]
            # the plan's precision (fp32: no TF32) reached the patched Caffe (caffe/patches/0010-*, 0012-*)
            assert (attempt["precision"], attempt["deterministic"]) == ("fp32", False), attempt
            assert "cuBLAS math: fp32" in log, log[:2000]
            if attempt["cudnn"]:
                cudnn_choices(log)


def cudnn_choices(log: str) -> None:
    """The cudnn_conv_algos lines (format: caffe/cudnn_conv_layer.hpp): one per layer, phase and input
    shape; the TRAIN net's algorithms measured, the TEST net's backward never searched; fp32."""
    lines = [dict(f.split("=", 1) for f in line.split("cudnn_conv_algos ", 1)[1].split())
             for line in log.splitlines() if "cudnn_conv_algos " in line]
    keys = [(c["layer"], c["phase"], c["input"]) for c in lines]
    assert keys and len(keys) == len(set(keys)), log[:4000]
    assert {(c["precision"], c["deterministic"], c["fallback"]) for c in lines} == {("fp32", "0", "none")}, lines
    train = [c for c in lines if c["phase"] == "TRAIN"]
    test = [c for c in lines if c["phase"] == "TEST"]
    assert train and all(c["fwd_by"] == c["bwd_filter_by"] == c["bwd_data_by"] == "find" for c in train), train
    assert test and all(c["fwd_by"] == "find" and c["bwd_filter_by"] == c["bwd_data_by"] == "none" for c in test), test


def test_report_of_the_gpu_run(gpu_plan, tmp_path):
    plan, res = gpu_plan
    assert res.returncode == 0
    out = tmp_path / "report"
    rep = tinyrun.run_cli("report", "--plan", str(plan.path), "--out", str(out), "--no-figures")
    assert rep.returncode == 0, rep.stdout + rep.stderr
    data = json.loads((out / "report.json").read_text())
    assert data and (out / "report.md").is_file()


def test_kill9_during_gpu_run_then_resume(tmp_path, tmp_path_factory, device):
    # Long enough on a GPU for the kill to land mid-run (the tiny net takes milliseconds an iteration).
    iters, every = (80, 20) if device is None else (4000, 500)
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory),
                                   solver={"max_iter": iters, "snapshot": every, "test_interval": 1000})
    net = plan.net("base-half0B")
    first = net.run.snapshot(every, "solverstate")
    cmd = tinyrun.transfer_cmd("run", "--plan", str(plan.path), "--only", net.name, *_where(device))
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    end = time.time() + 300
    # Caffe writes a snapshot in place: kill once one is whole (resume_point reads it), not as soon
    # as its file appears, or the rerun rightly starts over from iteration 0.
    while not (first.is_file() and net.run.resume_point()):
        assert time.time() < end and proc.poll() is None, "no first snapshot"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)   # runner, trainer and caffe at once
    proc.wait()
    assert not net.run.is_done()
    res = tinyrun.run_cli("run", "--plan", str(plan.path), "--only", net.name, *_where(device), timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert net.run.is_done()
    attempts = net.run.attempts()
    assert attempts[-1]["resumed_from"] >= every and attempts[-1]["exit"] == 0
    assert net.run.snapshot(iters).is_file()
