"""What training accepts and when a net counts as done: the preflight before any training, a crash
after the final snapshot, caffe's failures shown by their cause, the progress line."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from transfer import REPO
from transfer.core.errors import Exit
from transfer.plan.load import load_plan
from transfer.train.status import net_state

import tinyrun  # noqa: E402




# ---------------------------------------------------------------------------- preflight

def test_train_without_data_fails_before_writing_anything(tmp_path):
    plan = tinyrun.write_plan_copy(tmp_path, tmp_path / "nodata", write_nets=False)
    net = plan.net("base-half0A")
    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--cpu")
    assert res.returncode == Exit.ERROR, res.stderr
    assert "not ready to train" in res.stderr
    assert f"{tmp_path / 'nodata' / 'half0A' / 'train_lmdb'} is not an LMDB directory" in res.stderr
    assert "transfer prepare --plan" in res.stderr and "Traceback" not in res.stderr
    assert not net.run.path.exists()   # no init files, no logs


def test_run_without_data_fails_before_training(tmp_path):
    plan = tinyrun.write_plan_copy(tmp_path, tmp_path / "nodata", write_nets=False)
    res = tinyrun.run_cli("run", "--plan", str(plan.path), "--cpu", "--only", "half0A-2-half0B")
    assert res.returncode == Exit.ERROR, res.stderr
    # the transfer net and its base, both named
    assert "base-half0A: training data:" in res.stderr and "half0A-2-half0B: training data:" in res.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.requires_caffe
def test_labels_beyond_the_nets_classes_are_refused(tmp_path, tmp_path_factory):
    """The 8-class whole set given to a 4-class net: caffe would corrupt its heap; refused up front."""
    good = tinyrun.shared_data(tmp_path_factory)
    data = tmp_path / "data"
    data.mkdir()
    (data / "half0A").symlink_to(good / "all")
    plan = tinyrun.write_plan_copy(tmp_path / "plan", data, write_nets=False)
    net = plan.net("base-half0A")
    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--cpu")
    assert res.returncode == Exit.ERROR, res.stderr
    assert re.search(r"train_lmdb/manifest.json: \d+ images have labels outside 0\.\.3 \(e\.g\. 7\), but the net "
                     r"has 4 classes", res.stderr), res.stderr
    assert not net.run.path.exists()


def test_disk_estimate_counts_every_snapshot():
    from transfer.train import preflight
    plan = load_plan("paper")
    net = plan.net("base-half0A")
    # CaffeNet: 60,965,224 learned numbers with 1000 outputs (the count Caffe's own model zoo gives)
    assert preflight.param_count(plan.model, 1000) == 60_965_224
    per_snapshot = preflight.param_count(plan.model, net.fc8_outputs) * 4 * 2
    snapshots = net.max_iter // net.solver.snapshot
    assert preflight.disk_bytes(plan, net) == per_snapshot * (snapshots + (0 if net.run.init_state.is_file() else 1))


# ---------------------------------------------------------------------------- when caffe fails

@pytest.mark.requires_caffe
def test_crash_after_the_final_snapshot_is_a_failure(tmp_path, tmp_path_factory):
    """Caffe aborting after its final snapshot (as heap corruption does) leaves a failure with its
    cause, and running `transfer train` again does not call the net done."""
    data = tinyrun.shared_data(tmp_path_factory)
    # a long final test pass: the window between the final snapshot and the end of caffe
    plan = tinyrun.write_plan_copy(tmp_path, data, solver={"max_iter": 20, "snapshot": 20, "test_interval": 20,
                                                           "test_iter": 400, "display": 5})
    net = plan.net("base-half0A")
    cmd = tinyrun.transfer_cmd("train", net.name, "--plan", str(plan.path), "--cpu", "--progress-every", "0.3")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    final = net.run.snapshot(20, "solverstate")
    end = time.time() + 300
    while not final.is_file() and time.time() < end and proc.poll() is None:
        time.sleep(0.02)
    assert final.is_file(), proc.communicate()[0]
    time.sleep(0.2)  # the solverstate is written: caffe is in its final test
    caffe = tinyrun.children_of(proc.pid)
    assert caffe, "caffe ended before the test could abort it"
    os.kill(caffe[0], signal.SIGABRT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == Exit.FAILED, out
    assert "caffe killed by SIGABRT" in out and "after its final snapshot: the net is not done" in out
    assert re.search(r"base-half0A: iteration \d+/20, loss \d", out), out  # the progress line
    assert not net.run.is_done()
    failed = net.run.failed_record()
    assert failed["error"].startswith("caffe killed by SIGABRT") and "@ 0x" not in failed["error"]

    again = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--cpu")
    assert again.returncode == Exit.FAILED, again.stderr
    assert "final snapshot was written by attempt 1, which then failed: caffe killed by SIGABRT" in again.stderr
    assert not net.run.is_done() and len(net.run.log_files()) == 1   # caffe not run again
    assert net_state(plan, net).state == "failed"


@pytest.mark.requires_caffe
def test_caffe_failure_shows_the_first_error_line_not_the_stack(tmp_path, tmp_path_factory):
    """A solver file caffe refuses: the command, the FAILED record and `transfer status` show caffe's
    fatal line and where it is in the log; dependents are skipped, independent nets train."""
    data = tinyrun.shared_data(tmp_path_factory)
    plan = tinyrun.write_plan_copy(tmp_path, data, solver={"max_iter": 20, "snapshot": 20})
    base = plan.net("base-half0A")
    solver = REPO / base.files.solver
    text = solver.read_text()
    assert text.count('lr_policy: "step"') == 1
    solver.write_text(text.replace('lr_policy: "step"', 'lr_policy: "bogus"'))   # caffe stops at its first update
    res = tinyrun.run_cli("run", "--plan", str(plan.path), "--only", "half0A-2-half0B,half0B-2-half0B",
                          "--cpu", "--jobs", "2")
    assert res.returncode == Exit.FAILED, res.stderr
    assert "FAILED base-half0A: caffe killed by SIGABRT: Unknown learning rate policy: bogus" in res.stderr, res.stderr
    assert "skip  half0A-2-half0B" in res.stderr and plan.net("half0B-2-half0B").run.is_done()
    failed = base.run.failed_record()
    assert re.fullmatch(r".*attempt-001\.log:\d+", failed["where"])
    status = tinyrun.run_cli("status", "--plan", str(plan.path)).stdout
    assert "base-half0A failed: caffe killed by SIGABRT: Unknown learning rate policy: bogus" in status
    assert json.loads(base.run.attempts_file.read_text().splitlines()[-1])["exit"] == -signal.SIGABRT


# ---------------------------------------------------------------------------- a moved runs folder

@pytest.mark.requires_caffe
def test_moved_runs_folder_resumes_from_its_own_snapshot(tmp_path, tmp_path_factory):
    """Train partway, copy the runs folder elsewhere and spoil the old one's weights: the copy resumes
    from its snapshot, reads none of the old folder's files, and finishes."""
    import shutil

    import yaml

    from transfer.caffe.caffemodel import read_state
    data = tinyrun.shared_data(tmp_path_factory)
    plan = tinyrun.write_plan_copy(tmp_path / "a", data, solver={"max_iter": 40, "snapshot": 20,
                                                                 "test_interval": 40})
    net = plan.net("base-half0A")
    proc = subprocess.Popen(tinyrun.transfer_cmd("train", net.name, "--plan", str(plan.path), "--cpu"),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = net.run.snapshot(20, "solverstate")
    end = time.time() + 300
    while not first.is_file() and time.time() < end and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before it could be stopped")
    assert proc.returncode == Exit.INTERRUPTED, out
    old_runs = tmp_path / "a" / "runs"
    for _, state in net.run.snapshots():   # as earlier versions (absolute snapshot prefix) left them
        st = read_state(state)
        st.learned_net = str(state.with_suffix(".caffemodel"))
        state.write_bytes(st.SerializeToString())
    new_runs = tmp_path / "moved here" / "runs"
    shutil.copytree(old_runs, new_runs, symlinks=True)
    for model in (old_runs / net.name).rglob("*.caffemodel"):
        model.write_bytes(b"")          # loading any of these would fail caffe
    config = yaml.safe_load(plan.path.read_text())
    config["runs_dir"] = str(new_runs)
    (tmp_path / "moved.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    moved = load_plan(str(tmp_path / "moved.yaml")).net(net.name)
    stopped_at = moved.run.resume_point()[0]

    res = tinyrun.run_cli("train", net.name, "--plan", str(tmp_path / "moved.yaml"), "--cpu")
    assert res.returncode == 0, res.stderr
    assert moved.run.is_done() and not net.run.is_done()
    log = moved.run.attempt_log(2).read_text()
    assert f"resuming at iteration {stopped_at}" in res.stderr and str(old_runs) not in log
    assert read_state(moved.run.snapshot(40, "solverstate")).learned_net == f"snapshots/{net.name}_iter_40.caffemodel"


@pytest.mark.requires_caffe
def test_a_net_file_caffe_refuses_is_named_before_training(tmp_path, tmp_path_factory):
    """pycaffe (surgery) aborting on a net file: an error naming the file and Caffe's check, exit 2."""
    data = tinyrun.shared_data(tmp_path_factory)
    plan = tinyrun.write_plan_copy(tmp_path, data, solver={"max_iter": 20, "snapshot": 20})
    net = plan.net("base-half0A")
    train_net = REPO / net.files.train_net
    train_net.write_text(train_net.read_text().replace("num_output: 24", "num_output: 0"))  # conv1, no filters
    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--cpu")
    assert res.returncode == Exit.ERROR, res.stderr
    assert f"net 'base-half0A': pycaffe could not build {train_net} (killed by SIGABRT): Check failed: " \
           "num_output_ > 0 (0 vs. 0)" in res.stderr, res.stderr
    assert not net.run.init_weights.exists() and not net.run.log_files()


@pytest.mark.requires_caffe
def test_snapshots_beyond_the_free_disk_are_refused(tmp_path, tmp_path_factory):
    """A schedule whose snapshots would not fit on the disk: exit 74 before anything is written."""
    data = tinyrun.shared_data(tmp_path_factory)
    plan = tinyrun.write_plan_copy(tmp_path, data, solver={"max_iter": 10_000_000, "snapshot": 1, "stepsize": 1000},
                                   write_nets=False)
    net = plan.net("base-half0A")
    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--cpu")
    assert res.returncode == Exit.NO_SPACE, res.stderr
    assert re.search(r"training 1 net\(s\) writes about [\d.]+ TiB of snapshots and init files under .*runs; "
                     r"[\d.]+ \w+ free there", res.stderr), res.stderr
    assert not net.run.path.exists()


@pytest.mark.requires_caffe
def test_sigterm_while_starting_is_a_stop_not_a_death(tmp_path, tmp_path_factory):
    """SLURM may signal a job right after it starts: `transfer train` still importing exits 75
    (resubmittable), where Python's default would have been death by SIGTERM (143 in the job)."""
    data = tinyrun.shared_data(tmp_path_factory)
    plan = tinyrun.write_plan_copy(tmp_path, data, solver={"max_iter": 20, "snapshot": 20})
    proc = subprocess.Popen(tinyrun.transfer_cmd("train", "base-half0A", "--plan", str(plan.path), "--cpu"),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.3)   # the interpreter is up, the command's modules still loading
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == Exit.INTERRUPTED, out
    assert "SIGTERM before caffe started" in out and not plan.net("base-half0A").run.log_files()
    # a command that does not stop cleanly still ends on it, as by default
    other = subprocess.Popen(tinyrun.transfer_cmd("plan", "show", "--plan", str(plan.path)), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.05)  # (long before it could have finished)
    other.send_signal(signal.SIGTERM)
    assert other.wait(timeout=60) == -signal.SIGTERM
