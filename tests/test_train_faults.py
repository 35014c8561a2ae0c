"""Training faults that must never look finished: two plans sharing a runs_dir, init weights damaged
after surgery, a full disk in surgery and in training, a plan given by a relative path from another
directory, a net whose loss stops being finite, and the hint naming a plan as the user gave it.
Each asserts the exit status, the message naming the culprit, and that nothing looks finished."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from transfer import REPO
from transfer.caffe.caffemodel import identical_layers, learned_layers, read_model
from transfer.caffe.logs import Divergence, Watch, first_divergence
from transfer.core.errors import Exit
from transfer.core.files import repo_path
from transfer.plan.definition import recorded_by
from transfer.plan.load import load_plan
from transfer.plan.rundir import RunDir
from transfer.train import integrity, outcome, runfiles
from transfer.train.status import net_state

import tinyrun
from test_data_faults import _userns

FAST = {"max_iter": 20, "snapshot": 20}
WIDER = {"widths": [32, 64, 96, 96, 64, 1024, 1024]}   # conv1 24 -> 32


def _cli(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(tinyrun.transfer_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _row(status: str, net: str) -> list[str]:
    return next(line.split() for line in status.splitlines() if line.startswith(net + " "))


# ---------------------------------------------------------------------------- 1: which definition a run holds

def test_a_run_directory_names_what_differs_from_its_definition(pb2, tmp_path):
    """Recorded at first use, compared on every later one: other widths, another max_iter, a hand edit
    of the test net; a copy of the plan in another file is the same definition."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    a = tinyrun.write_plan_copy(tmp_path / "a", data, solver=FAST, runs=runs)
    b = tinyrun.write_plan_copy(tmp_path / "b", data, solver=FAST, model=WIDER, runs=runs)
    c = tinyrun.write_plan_copy(tmp_path / "c", data, solver={**FAST, "max_iter": 40}, runs=runs)
    same = tinyrun.write_plan_copy(tmp_path / "same", data, solver=FAST, runs=runs)
    na, nb, nc = (p.net("base-half0A") for p in (a, b, c))
    assert na.run.other_definition() is None            # not used yet
    na.run.record_definition(a.name, str(a.path))
    assert na.run.other_definition() is None and same.net("base-half0A").run.other_definition() is None
    recorded, diffs = nb.run.other_definition()
    assert recorded["plan_file"] == str(a.path) and recorded_by(recorded).startswith(f"plan 'tiny' ({a.path}, ")
    assert diffs == ["layer conv1: Convolution, 24 outputs, lr_mult 1/2 vs Convolution, 32 outputs, lr_mult 1/2"]
    assert nc.run.other_definition()[1] == ["max_iter 20 vs 40"]
    test_net = repo_path(na.files.test_net)
    test_net.write_text(test_net.read_text().replace("batch_size: 20", "batch_size: 21"))
    (diff,) = na.run.other_definition()[1]
    assert re.fullmatch(r"test\.prototxt sha256 [0-9a-f]{12} vs [0-9a-f]{12}", diff)


def test_a_run_directory_from_before_records_is_read_from_its_copies(pb2, tmp_path):
    """A run directory used before definitions were recorded holds its train/test/solver copies:
    those say which definition it trains (a multi-GPU attempt's split batch counted back whole)."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    old = tinyrun.write_plan_copy(tmp_path / "old", data, solver=FAST, runs=runs)
    wider = tinyrun.write_plan_copy(tmp_path / "wider", data, solver=FAST, model=WIDER, runs=runs)
    net = old.net("base-half0A")
    runfiles.write_run_files(old, net, "GPU", gpus=2, deterministic=True)
    assert "batch_size: 16" in net.run.net_copy("train").read_text()
    assert "layer data: Data, batch 16 from" in net.run.other_definition()[1][0]
    net.run.append_attempt({"attempt": 1, "gpus": [0, 1], "batch_per_gpu": 16, "effective_batch": 32})
    assert net.run.other_definition() is None
    recorded, diffs = wider.net("base-half0A").run.other_definition()
    assert "recorded no plan" in recorded_by(recorded) and diffs[0].startswith("layer conv1: Convolution, 24 outputs")


@pytest.mark.requires_caffe
def test_two_plans_sharing_a_runs_dir_do_not_take_each_others_nets(tmp_path, tmp_path_factory):
    """Plan a trains base-half0A; plan b (other widths) and plan c (another max_iter) share its runs_dir:
    neither counts it done, train/run refuse naming both plans and what differs, nothing of a's run
    changes; `--retrain` sets a's files aside and trains c's."""
    data, runs = tinyrun.shared_data(tmp_path_factory), tmp_path / "runs"
    a = tinyrun.write_plan_copy(tmp_path / "a", data, solver=FAST, runs=runs)
    b = tinyrun.write_plan_copy(tmp_path / "b", data, solver=FAST, model=WIDER, runs=runs)
    c = tinyrun.write_plan_copy(tmp_path / "c", data, solver={**FAST, "max_iter": 40}, runs=runs)
    res = _cli("train", "base-half0A", "--plan", str(a.path), "--cpu")
    assert res.returncode == 0, res.stderr
    base = a.net("base-half0A")
    done = base.run.done_file.read_bytes()

    status = _cli("status", "--plan", str(b.path)).stdout
    assert _row(status, "base-half0A")[1] == "other" and not re.search(r"\d+ done", status), status
    assert f"recorded by plan 'tiny' ({a.path}" in status and "conv1: Convolution, 24 outputs" in status
    assert not b.net("base-half0A").run.is_done() and not c.net("base-half0A").run.is_done()
    for plan, what in ((b, "layer conv1: Convolution, 24 outputs, lr_mult 1/2 vs Convolution, 32 outputs"),
                       (c, "max_iter 20 vs 40")):
        for cmd in (("train", "base-half0A"), ("run", "--only", "base-half0A")):
            res = _cli(*cmd, "--plan", str(plan.path), "--cpu")
            assert res.returncode == Exit.ERROR, res.stderr
            assert f"{runs / 'base-half0A'} holds another definition of the net: recorded by plan 'tiny' " \
                   f"({a.path}" in res.stderr and f"({plan.path}) differs" in res.stderr, res.stderr
            assert what in res.stderr and "--retrain" in res.stderr and "already done" not in res.stderr
    res = _cli("train", "half0A-2-half0B", "--plan", str(b.path), "--cpu")   # its base is not done for b
    assert res.returncode == Exit.ERROR and "'base-half0A', which is not finished" in res.stderr, res.stderr
    assert base.run.is_done() and base.run.done_file.read_bytes() == done and len(base.run.log_files()) == 1

    res = _cli("train", "base-half0A", "--plan", str(c.path), "--cpu", "--retrain")
    assert res.returncode == 0, res.stderr
    assert "--retrain: another definition's files set aside in" in res.stderr
    (old,) = c.net("base-half0A").run.superseded_dir.iterdir()
    assert (old / "DONE").read_bytes() == done and json.loads((old / "definition.json").read_text())["max_iter"] == 20
    assert c.net("base-half0A").run.is_done() and not base.run.is_done()
    assert _row(_cli("status", "--plan", str(a.path)).stdout, "base-half0A")[1] == "other"


# ---------------------------------------------------------------------------- 3: init weights damaged after surgery

@pytest.mark.requires_caffe
def test_init_weights_damaged_after_surgery_are_refused(tmp_path, tmp_path_factory):
    """400 bytes of conv1 overwritten in init.caffemodel (finite numbers: training would run and the old
    check compared frozen layers with this very file): named before caffe runs; retrained, the frozen
    layers are checked against the base's final weights."""
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory), solver=FAST)
    base, net = plan.net("base-half0A"), plan.net("half0A-2-half0B")
    assert _cli("train", base.name, "--plan", str(plan.path), "--cpu").returncode == 0
    assert _cli("surgery", net.name, "--plan", str(plan.path)).returncode == 0
    init = net.run.init_weights
    raw = bytearray(init.read_bytes())
    at = raw.index(b"conv1")
    raw[at + 200:at + 600] = b"\x3c" * 400
    init.write_bytes(bytes(raw))
    assert not identical_layers(init, base.run.final_weights, ["conv1"])["conv1"]   # damaged, still loads

    res = _cli("train", net.name, "--plan", str(plan.path), "--cpu")
    assert res.returncode == Exit.ERROR, res.stderr
    assert f"{init} is not the file surgery wrote (sha256 " in res.stderr and "surgery.json records" in res.stderr
    assert f"transfer train {net.name} --plan {plan.path} --retrain" in res.stderr
    assert not net.run.log_files() and not net.run.done_file.exists()   # caffe never started
    status = _cli("status", "--plan", str(plan.path)).stdout
    assert _row(status, net.name)[1] == "failed" and f"{init} is not the file surgery wrote" in status

    res = _cli("train", net.name, "--plan", str(plan.path), "--cpu", "--retrain")
    assert res.returncode == 0, res.stderr
    assert "frozen conv1, conv2 bit-identical to base-half0A's final weights" in res.stderr
    assert net.run.done_record()["frozen_check"]["against"] == {str(base.run.final_weights): ["conv1", "conv2"]}
    # Final weights whose conv1 moved from the base's are caught even where init.caffemodel moved the same
    # way (what the frozen check compared with before).
    final, start = read_model(net.run.final_weights), read_model(init)
    for model in (final, start):
        learned_layers(model)["conv1"].blobs[0].data[0] += 1.0
    (tmp_path / "final").write_bytes(final.SerializeToString())
    (tmp_path / "init").write_bytes(start.SerializeToString())
    assert identical_layers(tmp_path / "init", tmp_path / "final", ["conv1"]) == {"conv1": True}
    assert integrity.frozen_check(plan, net, tmp_path / "final")["changed"] == ["conv1"]


# ---------------------------------------------------------------------------- 9: a full disk

DISK_DRIVER = """
import json, os, subprocess, sys, time
disk, plan, out_json = sys.argv[1:4]
run = os.path.join(disk, "runs", "base-half0A")
T = [sys.executable, "-m", "transfer"]

def cli(*args):
    res = subprocess.run(T + list(args), capture_output=True, text=True)
    return [res.returncode, res.stderr, res.stdout]

def fill(leave):
    st = os.statvfs(disk)
    with open(os.path.join(disk, "filler"), "wb") as f:
        f.write(b"x" * (st.f_bavail * st.f_frsize - leave))

def listing(sub=""):
    where = os.path.join(run, sub)
    return sorted(os.listdir(where)) if os.path.isdir(where) else []

out = {}
fill(256 * 1024)
out["surgery"] = cli("surgery", "base-half0A", "--plan", plan)
out["surgery_files"], out["surgery_status"] = listing(), cli("status", "--plan", plan)[2]
os.unlink(os.path.join(disk, "filler"))
proc = subprocess.Popen(T + ["train", "base-half0A", "--plan", plan, "--cpu"], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)
log = os.path.join(run, "logs", "attempt-001.log")
while proc.poll() is None and not (os.path.exists(log) and "Iteration 20, Testing net" in open(log).read()):
    time.sleep(0.02)   # (caffe tests iteration 20 once its snapshot at 20 is written)
fill(1 << 20)
out["train"] = [proc.wait(), proc.stdout.read()]
out["snapshots"], out["files"] = listing("snapshots"), listing()
out["failed"] = json.load(open(os.path.join(run, "FAILED"))) if os.path.exists(os.path.join(run, "FAILED")) else None
out["status"] = cli("status", "--plan", plan)[2]
os.unlink(os.path.join(disk, "filler"))
out["again"] = cli("train", "base-half0A", "--plan", plan, "--cpu")
out["done"] = os.path.exists(os.path.join(run, "DONE"))
out["attempts"] = [json.loads(line) for line in open(os.path.join(run, "attempts.jsonl"))]
json.dump(out, open(out_json, "w"))
"""


@pytest.mark.requires_caffe
@pytest.mark.skipif(not _userns(), reason="needs a user namespace (unshare -rm) to mount a small tmpfs")
def test_a_full_disk_in_surgery_and_in_training_ends_74_and_resumes(tmp_path, tmp_path_factory):
    """A real small tmpfs: surgery on a full disk, then training whose disk fills after its first snapshot.
    Both exit 74 naming the place; nothing cut short is left to resume from; status shows pending, then
    failed; with space again the same command resumes and finishes."""
    disk, driver, result = tmp_path / "disk", tmp_path / "driver.py", tmp_path / "result.json"
    disk.mkdir()
    driver.write_text(textwrap.dedent(DISK_DRIVER))
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory), runs=disk / "runs",
                                   solver={"max_iter": 100, "snapshot": 20})
    script = (f"mount -t tmpfs -o size=96m tmpfs {disk} && cd {REPO} && "
              f"exec {sys.executable} {driver} {disk} {plan.path} {result}")
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    got = json.loads(result.read_text())
    code, err, _ = got["surgery"]
    assert code == Exit.NO_SPACE, err
    assert f"{disk}/runs/base-half0A/init.caffemodel: no space left on the device; nothing of base-half0A's " \
           "surgery was kept; free space and run the same command again" in err and "Traceback" not in err
    assert "init.caffemodel" not in got["surgery_files"] and "surgery.json" not in got["surgery_files"]
    assert _row(got["surgery_status"], "base-half0A")[1] == "pending"

    code, out = got["train"]
    assert code == Exit.NO_SPACE, out
    m = re.search(r"caffe killed by SIGABRT \(Check failed: .*\) with the disk of \S+/base-half0A full: no room "
                  r"for a snapshot; free space and run the same command again \(it resumes from iteration (\d+)\)", out)
    assert m and "Traceback" not in out, out
    resume = int(m.group(1))
    assert resume >= 20 and got["failed"]["no_space"] and "DONE" not in got["files"]
    pairs = [name for name in got["snapshots"] if re.fullmatch(r"base-half0A_iter_\d+\.(caffemodel|solverstate)", name)]
    assert max(int(re.search(r"_(\d+)\.", p).group(1)) for p in pairs) == resume    # nothing newer, cut short
    assert any(name.endswith(".unreadable") for name in got["snapshots"]), got["snapshots"]
    assert _row(got["status"], "base-half0A")[1] == "failed" and "no room for a snapshot" in got["status"]

    code, err, _ = got["again"]
    assert code == 0 and got["done"], err
    assert got["attempts"][-1]["resumed_from"] == resume and got["attempts"][-1]["exit"] == 0


def _snapshot_pair(pb2, run: RunDir, it: int, layers: int = 2, values: tuple = (1.0, 2.0), per_blob: int = 1) -> None:
    """A small snapshot pair of `layers` layers of two blobs each, as caffe writes them (`per_blob`
    solver histories a blob: 2 for Adam)."""
    model = pb2.NetParameter(name="n")
    for i in range(layers):
        layer = model.layer.add(name=f"conv{i + 1}", type="Convolution")
        for _ in range(2):
            layer.blobs.add(data=list(values)).shape.dim.extend([len(values)])
    state = pb2.SolverState(iter=it, learned_net=f"snapshots/n_iter_{it}.caffemodel")
    for _ in range(2 * layers * per_blob):
        state.history.add(data=[0.0] * len(values)).shape.dim.extend([len(values)])
    run.snapshots_dir.mkdir(parents=True, exist_ok=True)
    run.snapshot(it).write_bytes(model.SerializeToString())
    run.snapshot(it, "solverstate").write_bytes(state.SerializeToString())


def test_snapshots_cut_short_are_never_a_resume_point(pb2, tmp_path):
    """An empty .caffemodel parses as an empty message (caffe would load no weights and train from
    fillers), one cut at a layer boundary parses too: both are skipped, and set aside by the trainer,
    with weights written without their solver state."""
    run = RunDir(tmp_path / "n", "n", 100)
    for it in (20, 40, 50, 60):
        _snapshot_pair(pb2, run, it)
    run.snapshot(40).write_bytes(b"")                                         # a full disk
    cut = read_model(run.snapshot(50))
    del cut.layer[1:]
    run.snapshot(50).write_bytes(cut.SerializeToString())                     # cut between layers
    run.snapshot(60, "solverstate").unlink()                                  # killed between the two
    assert run.resume_point() == (20, run.snapshot(20, "solverstate"))
    assert "holds 0 weight blob(s) and n_iter_40.solverstate 4 histories" in run.snapshot_problem(
        40, run.snapshot(40, "solverstate"))
    assert len(list(run.snapshots_dir.iterdir())) == 7                        # only read
    assert run.resume_point(set_aside=True)[0] == 20
    assert sorted(p.name for p in run.snapshots_dir.iterdir()) == [
        "n_iter_20.caffemodel", "n_iter_20.solverstate", "n_iter_40.caffemodel.unreadable",
        "n_iter_40.solverstate.unreadable", "n_iter_50.caffemodel.unreadable", "n_iter_50.solverstate.unreadable",
        "n_iter_60.caffemodel.unreadable"]
    assert [it for it, _ in run.snapshots()] == [20]
    _snapshot_pair(pb2, run, 70, per_blob=2)                                 # two histories a blob: Adam's
    assert run.resume_point()[0] == 20
    run.net_copy("solver").write_text('type: "Adam"\n')
    assert run.resume_point()[0] == 70 and run.snapshot_problem(20, run.snapshot(20, "solverstate"))


# ---------------------------------------------------------------------------- 12, 19: plan paths

@pytest.mark.requires_caffe
def test_run_with_a_relative_plan_path_from_another_directory(tmp_path, tmp_path_factory):
    """`transfer run --plan rel.yaml` where the plan's own paths are relative (to the repository, as
    documented): the whole tiny plan trains from another working directory, nothing lands there."""
    data = tinyrun.shared_data(tmp_path_factory)
    config = yaml.safe_load(tinyrun.TINY.read_text())
    rel = {key: os.path.relpath(path, REPO) for key, path in (
        ("data_dir", data), ("runs_dir", tmp_path / "runs"), ("split_dir", data.parent / "synthetic"),
        ("nets_dir", tmp_path / "prototxt"), ("solvers_dir", tmp_path / "solvers"))}
    assert all(not Path(p).is_absolute() for p in rel.values())
    config.update(rel, solver={**config["solver"], **FAST})
    here = tmp_path / "elsewhere"
    here.mkdir()
    (here / "rel.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    res = _cli("run", "--plan", "rel.yaml", "--cpu", "--jobs", "2", cwd=here, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "8/8 done" in res.stderr and "no plan" not in res.stderr
    plan = load_plan(str(here / "rel.yaml"))
    assert all(n.run.is_done() and n.run.path.parent == tmp_path / "runs" for n in plan.nets)
    assert sorted(os.listdir(here)) == ["rel.yaml"]     # nothing written relative to the working directory
    assert "8 done" in _cli("status", "--plan", "rel.yaml", cwd=here).stdout


@pytest.mark.slow   # child processes (builds, kills, several commands): the full tier
def test_an_unknown_net_hint_names_the_plan_as_given(tmp_path):
    """The suggested `transfer plan show --plan ...` works from anywhere: a plan file by its path
    (its `name:` is no plan of transfer/plans/ there), a plan that comes with transfer by its name."""
    here = tmp_path / "here"
    here.mkdir()
    shutil.copy(tinyrun.TINY, here / "mine.yaml")
    res = _cli("train", "nosuch", "--plan", "mine.yaml", "--cpu", cwd=here)
    assert res.returncode == Exit.ERROR and "has no net 'nosuch'" in res.stderr, res.stderr
    suggested = re.search(r"try `transfer (plan show --plan ([^`\s]+))`", res.stderr)
    assert suggested and suggested.group(2) == str(here / "mine.yaml"), res.stderr
    again = _cli(*suggested.group(1).split(), cwd=tmp_path)
    assert again.returncode == 0 and "base-half0A" in again.stdout, again.stderr
    assert "try `transfer plan show --plan tiny`" in _cli("train", "nosuch", "--plan", "tiny").stderr


# ---------------------------------------------------------------------------- 18: a diverging net

LOG = """\
I1202 01:33:11.9 9666 solver.cpp:346] Iteration 0, Testing net (#0)
I1202 01:33:11.9 9666 solver.cpp:413]     Test net output #1: loss = 1.83515 (* 1 = 1.83515 loss)
I1202 01:33:12.0 9666 solver.cpp:231] Iteration 0, loss = 2.90106
I1202 01:33:12.1 9666 solver.cpp:231] Iteration 1, loss = 52.8
I1202 01:33:12.2 9666 solver.cpp:231] Iteration 2, loss = -nan
I1202 01:33:12.2 9666 solver.cpp:247]     Train net output #0: loss = -nan (* 1 = -nan loss)
"""


def test_the_first_loss_that_is_not_finite_is_found_as_caffe_writes(tmp_path):
    log = tmp_path / "attempt-001.log"
    watch = Watch(log)
    assert watch.poll() is None                              # not there yet
    head, tail = LOG.split("= -nan\n", 1)
    log.write_text(head + "= -n")                            # the line still being written
    assert watch.poll() is None
    with open(log, "a") as fh:
        fh.write("an\n" + tail + "*** Error in `caffe': double free or corruption (out): 0x01 ***\n")
    found = watch.poll()
    assert (found.iteration, found.value, found.line) == (2, "-nan", 5)
    assert str(found) == f"loss -nan at iteration 2 ({log}:5)"
    assert first_divergence(log) == found
    finite = tmp_path / "finite.log"
    finite.write_text(LOG.replace("-nan", "1.5") + "I1202 01:33:12.3 1 solver.cpp:1] Iteration 3, loss = inf")
    assert first_divergence(finite).value == "inf"        # (a last line without its newline: caffe killed)
    old = tmp_path / "2014.log"
    old.write_text("I0416 00:31:12.4 1 solver.cpp:1] Iteration 1000, Testing net\n"
                   "I0416 00:31:12.5 1 solver.cpp:1] Test score #0: nan\n")
    assert first_divergence(old) is None                    # score #0 is the accuracy
    old.write_text(old.read_text() + "I0416 00:31:12.6 1 solver.cpp:1] Test score #1: nan\n")
    assert first_divergence(old).iteration == 1000


def test_snapshots_from_the_divergence_on_are_set_aside(pb2, tmp_path):
    """Caffe snapshots iteration N before it logs N's loss: snapshots from the first loss that is not
    finite on, and newer ones whose weights are not finite, are never resumed from."""
    run = RunDir(tmp_path / "n", "n", 100)
    for it in (2, 4, 8):
        _snapshot_pair(pb2, run, it)
    _snapshot_pair(pb2, run, 6, values=(1.0, float("nan")))
    point = outcome.last_finite(run, Divergence(7, "nan", "log", 1, "Iteration 7, loss = nan"))
    assert point == (4, run.snapshot(4, "solverstate"))
    assert [it for it, _ in run.snapshots()] == [4, 2]
    assert run.snapshot(6).with_name("n_iter_6.caffemodel.diverged").is_file()
    assert run.snapshot(8).with_name("n_iter_8.solverstate.diverged").is_file()


@pytest.mark.requires_caffe
def test_a_diverging_net_stops_and_fails_as_diverged(tmp_path, tmp_path_factory):
    """base_lr 1000 makes the tiny net's loss NaN within an iteration or two: caffe is stopped long
    before max_iter, the net FAILED as diverged at the iteration the log shows, with no snapshot of NaN
    weights left to resume from (or caffe's pooling crashes on NaN first: diverged all the same)."""
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory), solver={
        "base_lr": 1000.0, "max_iter": 60, "snapshot": 1, "display": 1, "test_interval": 60})
    net = plan.net("base-half0A")
    res = _cli("run", "--plan", str(plan.path), "--cpu", "--only", net.name)
    assert res.returncode == Exit.FAILED, res.stderr
    (log,) = net.run.log_files()
    text = log.read_text()
    first = int(re.search(r"Iteration (\d+), loss = -?nan", text).group(1))
    assert f"FAILED {net.name}: diverged: loss " in res.stderr and f"at iteration {first} " in res.stderr, res.stderr
    assert "Optimization Done" not in text and max(map(int, re.findall(r"Iteration (\d+)", text))) < 60
    failed = net.run.failed_record()
    assert failed["diverged"]["iteration"] == first and "a rerun " in failed["error"]
    assert not net.run.is_done() and not net.run.done_file.exists()
    point = net.run.resume_point()
    assert point is None or point[0] < first
    assert all(it < first for it, _ in net.run.snapshots())
    status = _cli("status", "--plan", str(plan.path)).stdout
    assert _row(status, net.name)[1] == "diverged" and net_state(plan, net).state == "diverged"
    assert f"{net.name} diverged: loss " in status and f"at iteration {first} " in status
