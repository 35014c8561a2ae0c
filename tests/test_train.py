"""Training with the real caffe binary on the tiny plan (CPU): the whole plan, resume after kill -9,
two runners at once, signals and time limits, failures, locks."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transfer import REPO
from transfer.core import locks
from transfer.core.errors import Exit
from transfer.core.files import repo_path
from transfer.plan.model import LAYERS

import tinyrun  # noqa: E402



def _logs(plan, net) -> list[Path]:
    return net.run.log_files()


def _wait_for(pred, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------------- locks (no Caffe)

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_and_released(tmp_path):
    path = tmp_path / "held"
    with locks.acquire(path) as lock:
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(locks.LockHeld, match=f"pid {os.getpid()}"):
            locks.acquire(path)
        assert lock.took_over is None
    assert not path.exists()


def test_stale_lock_of_dead_pid_is_taken_over(tmp_path):
    path = tmp_path / "held"
    dead = _dead_pid()
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead, "token": "x"}))
    lock = locks.acquire(path)
    assert lock.took_over and f"pid {dead}" in lock.took_over and "gone" in lock.took_over
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()


def test_other_host_lock_live_until_heartbeat_stops(tmp_path):
    path = tmp_path / "held"
    path.write_text(json.dumps({"host": "elsewhere.example", "pid": 1, "token": "x"}))
    with pytest.raises(locks.LockHeld, match="elsewhere.example"):
        locks.acquire(path, stale_after=60)
    old = time.time() - 120
    os.utime(path, (old, old))
    lock = locks.acquire(path, stale_after=60)
    assert "no heartbeat from elsewhere.example" in lock.took_over
    lock.release()


def test_release_never_removes_a_lock_taken_over(tmp_path):
    path = tmp_path / "held"
    lock = locks.acquire(path)
    path.unlink()
    path.write_text(json.dumps({"host": "other", "pid": 2, "token": "theirs"}))
    lock.release()
    assert path.exists()


# ---------------------------------------------------------------------------- the whole plan

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return tinyrun.trained_plan(tmp_path_factory)


@pytest.mark.requires_caffe
def test_run_trains_every_net_in_dependency_order(trained):
    plan, res = trained
    assert res.returncode == 0, res.stdout + res.stderr
    for net in plan.nets:
        assert net.run.is_done(), net.name
        newest, state = net.run.snapshots()[0]  # what caffe wrote last
        assert newest == net.max_iter and net.run.final_weights == state.with_suffix(".caffemodel")
        assert len(_logs(plan, net)) == 1
        done = net.run.done_record()
        assert done["final_iter"] == net.max_iter and done["frozen_check"]["identical"] is True
        assert done["frozen_check"]["layers"] == LAYERS[:net.frozen]
    # a net starts only after its base finished
    starts = {l.split("start ")[1].split()[0]: i for i, l in enumerate(res.stderr.splitlines()) if "] start " in l}
    dones = {l.split("done  ")[1].split()[0]: i for i, l in enumerate(res.stderr.splitlines()) if "] done  " in l}
    for net in plan.nets:
        if net.base:
            assert dones[net.base] < starts[net.name], (net.name, res.stderr)


@pytest.mark.requires_caffe
def test_run_dir_layout_and_paths(trained):
    plan, _ = trained
    net = plan.net("half0A-2-half0B")
    run = net.run
    for path in (run.init_weights, run.surgery_record, run.net_copy("train"), run.net_copy("test"),
                 run.net_copy("solver"), run.done_file, run.attempt_log(1)):
        assert path.is_file(), path
        assert path.parent in (run.path, run.logs_dir)
    solver = run.net_copy("solver").read_text()
    # the run's own files relative to it (caffe runs inside it): a moved runs folder trains from its own
    assert 'snapshot_prefix: "snapshots/half0A-2-half0B"' in solver and 'train_net: "train.prototxt"' in solver
    assert "solver_mode: CPU" in solver
    train = run.net_copy("train").read_text()
    # a transfer net reads its target's images and subtracts its base's mean
    data = repo_path(plan.dirs.data)
    assert f'source: "{data}/half0B/train_lmdb"' in train
    assert f'mean_file: "{data}/half0A/mean.binaryproto"' in train
    assert not run.has_lock_file()


@pytest.mark.requires_caffe
def test_frozen_layers_unchanged_finetuned_layers_changed(trained):
    from transfer.caffe.caffemodel import identical_layers
    plan, _ = trained
    for name in ("half0B-2-half0B", "half0A-6-half0B", "half0A-2-half0B-ft", "half0A-6-half0B-ft"):
        net = plan.net(name)
        same = identical_layers(net.run.init_weights, net.run.final_weights)
        assert [l for l in LAYERS if same[l]] == LAYERS[:net.frozen], name
    # fine-tuned: copied layers start equal to the base's final weights and then move
    ft = plan.net("half0A-6-half0B-ft")
    base_final = plan.net("base-half0A").run.final_weights
    assert not any(identical_layers(base_final, ft.run.final_weights, LAYERS[:6]).values())


@pytest.mark.requires_caffe
def test_status_after_training(trained):
    plan, _ = trained
    res = tinyrun.run_cli("status", "--plan", str(plan.path))
    assert res.returncode == 0, res.stderr
    rows = [l.split() for l in res.stdout.splitlines()[1:1 + len(plan.nets)]]
    assert {r[0] for r in rows} == {n.name for n in plan.nets}
    assert all(r[1] == "done" and r[2] == "60/60" for r in rows), res.stdout
    assert all(0.0 <= float(r[3]) <= 1.0 for r in rows)
    assert res.stdout.strip().splitlines()[-1] == f"{len(plan.nets)} done"


@pytest.mark.requires_caffe
def test_rerun_of_finished_plan_trains_nothing(trained):
    plan, _ = trained
    res = tinyrun.run_cli("run", "--plan", str(plan.path), "--cpu")
    assert res.returncode == 0 and "] start " not in res.stderr, res.stderr
    res = tinyrun.run_cli("train", "base-half0A", "--plan", str(plan.path), "--cpu")
    assert res.returncode == 0 and "already done" in res.stderr
    assert all(len(_logs(plan, n)) == 1 for n in plan.nets)


# ---------------------------------------------------------------------------- interruptions

@pytest.fixture
def scratch(tmp_path, tmp_path_factory):
    return lambda **solver: tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory),
                                                    solver=solver or None)


@pytest.mark.requires_caffe
def test_kill9_then_rerun_resumes_from_snapshot(scratch):
    plan = scratch(max_iter=80, snapshot=20)
    net = plan.net("base-half0B")
    proc = subprocess.Popen(tinyrun.transfer_cmd("run", "--plan", str(plan.path), "--only", net.name, "--cpu"),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    _wait_for(lambda: net.run.snapshot(20, "solverstate").is_file(), 120, "the first snapshot")
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # runner, `transfer train` and caffe, no chance to clean up
    proc.wait()
    time.sleep(0.5)
    assert not net.run.is_done()
    assert net.run.has_lock_file()  # left behind by the dead process

    res = tinyrun.run_cli("run", "--plan", str(plan.path), "--only", net.name, "--cpu")
    assert res.returncode == 0, res.stderr
    assert "took over the lock" in res.stderr and "gone" in res.stderr
    assert net.run.is_done()
    logs = _logs(plan, net)
    assert logs == [net.run.attempt_log(1), net.run.attempt_log(2)]
    second = logs[1].read_text()
    assert any(f"-snapshot={state}" in second for _, state in net.run.snapshots())
    resumed = net.run.attempts()[-1]
    assert resumed["resumed_from"] >= 20 and resumed["exit"] == 0
    assert net.run.snapshot(80).is_file()


@pytest.mark.requires_caffe
def test_sigterm_and_time_limit_snapshot_and_exit_75(scratch):
    plan = scratch(max_iter=400, snapshot=1000, test_interval=1000)
    net = plan.net("base-half0A")
    cmd = tinyrun.transfer_cmd("train", net.name, "--plan", str(plan.path), "--cpu")
    log_dir = net.run.logs_dir
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: any("Iteration 20" in p.read_text() for p in log_dir.glob("*.log")), 120, "training")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == Exit.INTERRUPTED, out
    first = net.run.resume_point()
    assert first and 20 <= first[0] < 400, out   # a snapshot caffe took on request, not by schedule

    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--cpu", "--max-seconds", "4")
    assert res.returncode == Exit.INTERRUPTED, res.stderr
    assert "time limit" in res.stderr
    second = net.run.resume_point()
    assert second[0] > first[0] and not net.run.is_done()

    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--cpu")
    assert res.returncode == 0, res.stderr
    assert net.run.is_done() and len(_logs(plan, net)) == 3


@pytest.mark.requires_caffe
def test_ctrl_c_stops_run_with_a_snapshot_and_exit_75(scratch):
    """Ctrl-C at a terminal: SIGINT to the whole foreground group (runner, `transfer train`, caffe).
    The run ends 75, as `transfer --help` and the README say, with a snapshot to resume from."""
    plan = scratch(max_iter=400, snapshot=1000, test_interval=1000)
    net = plan.net("base-half0A")
    proc = subprocess.Popen(tinyrun.transfer_cmd("run", "--plan", str(plan.path), "--only", net.name, "--cpu"),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    _wait_for(lambda: any("Iteration 20" in p.read_text() for p in net.run.logs_dir.glob("*.log")), 120, "training")
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == Exit.INTERRUPTED == 75, out
    assert f"stopped with a snapshot: {net.name}" in out and "Traceback" not in out
    assert not net.run.is_done() and not net.run.failed_record()
    stopped = net.run.resume_point()
    assert stopped and 20 <= stopped[0] < 400, out   # caffe's snapshot on request, not one by schedule
    from transfer.cli import build_parser
    text = build_parser().format_help()
    assert re.search(r"^\s+75  train/run stopped with a snapshot \(Ctrl-C, SIGTERM", text, re.M), text
    assert "| 75 | `transfer train` / `run` stopped with a snapshot on request (Ctrl-C, SIGTERM" in \
        (REPO / "README.md").read_text()


@pytest.mark.requires_caffe
def test_two_runners_train_each_net_once(scratch):
    plan = scratch(max_iter=40, snapshot=20)
    only = "half0B-*"   # two selffer nets; their base comes along
    cmd = tinyrun.transfer_cmd("run", "--plan", str(plan.path), "--only", only, "--cpu")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    nets = [plan.net(n) for n in ("base-half0B", "half0B-2-half0B", "half0B-6-half0B")]
    for net in nets:
        assert len(_logs(plan, net)) == 1, net.name   # one caffe attempt in all
    attempts = sum(len(re.findall(r": attempt \d+ \(", o)) for o in outs)
    assert attempts == len(nets), outs


@pytest.mark.requires_caffe
def test_live_lock_refuses_second_trainer(scratch):
    plan = scratch()
    net = plan.net("base-half0A")
    with net.run.acquire_lock():
        res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--cpu")
    assert res.returncode == Exit.LOCKED and f"held by pid {os.getpid()}" in res.stderr
    assert not _logs(plan, net)
