"""Several nets a GPU and one net on several GPUs: the runner's GPU pool, `transfer train --gpu 0,1`
(command line and run prototxt: what a CPU machine can check), the simulator's choices from GPU
speed figures, and `transfer submit --nets-per-gpu` (job scripts, and packs in a real SLURM queue)."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

import tinyrun  # noqa: E402

from transfer.caffe import gpu
from transfer.plan import placement, schedule  # noqa: E402
from transfer.core.errors import TransferError  # noqa: E402
from transfer.plan.load import load_plan  # noqa: E402
from transfer.train.runner import Pool  # noqa: E402
from transfer.plan.speed import DEFAULT_FIGURES, load_figures  # noqa: E402


# ---------------------------------------------------------------------------- the runner's pool

def test_pool_spreads_then_packs_and_wide_nets_take_whole_gpus():
    pool = Pool(["0", "1"], 2)
    got = []
    for _ in range(4):
        got.append(pool.place())
        pool.take(got[-1])
    assert got == [("0",), ("1",), ("0",), ("1",)] and pool.place() is None
    assert pool.place(2) is None
    for d in got:
        pool.release(d)
    assert pool.place(2) == ("0", "1")
    pool.take(("0", "1"))
    assert pool.place() is None  # a GPU running a multi-GPU net runs nothing else
    pool.release(("0", "1"))
    one = Pool(["0"])
    one.take(one.place())
    assert one.place() is None
    with pytest.raises(TransferError, match="--nets-per-gpu must be a positive integer, not 0"):
        Pool(["0"], 0)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_nets_per_gpu_is_named(value):
    res = tinyrun.run_cli("run", "--plan", "tiny", "--gpus", "0", "--nets-per-gpu", value)
    assert res.returncode == 2 and f"--nets-per-gpu {value!r}: expected a positive integer" in res.stderr


def test_nets_per_gpu_needs_gpus():
    res = tinyrun.run_cli("run", "--plan", "tiny", "--cpu", "--nets-per-gpu", "2")
    assert res.returncode == 2 and "--nets-per-gpu, --net-gpus and --multi-gpu need --gpus" in res.stderr


def _events(stderr: str) -> list[tuple[str, str, str]]:
    """(what, net, where) of the runner's start/FAILED lines, in order."""
    out = []
    for line in stderr.splitlines():
        m = re.search(r"\] (start|FAILED) (\S+?):?(?: on (.*?) \(|\s|$)", line)
        if m:
            out.append((m.group(1), m.group(2), m.group(3) or ""))
    return out


@pytest.mark.slow   # the runner with its stand-in children, twice
@pytest.mark.parametrize("k", [1, 2])
def test_runner_packs_k_nets_a_gpu_after_their_bases(tmp_path, tmp_path_factory, k):
    """With a CPU-only build every `transfer train --gpu` is refused at once, which shows what the
    runner started, where, and how many at a time (a GPU machine would train them)."""
    if gpu.current_build().gpu is not False:
        pytest.skip("the Caffe in use is not a CPU-only build")
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory))
    res = tinyrun.run_cli("run", "--plan", str(plan.path), "--gpus", "0", "--nets-per-gpu", str(k))
    assert res.returncode == 1, res.stderr
    ev = _events(res.stderr)
    starts = [e for e in ev if e[0] == "start"]
    # Only the bases start (their dependents wait for them, and are skipped when they fail), on GPU 0.
    assert sorted(n for _, n, _ in starts) == ["base-half0A", "base-half0B"], res.stderr
    assert all(where == "GPU 0" for _, _, where in starts)
    first_failure = next(i for i, e in enumerate(ev) if e[0] == "FAILED")
    # K=2: both bases run at once on GPU 0; K=1: the second starts only after the first ended.
    assert sum(1 for e in ev[:first_failure] if e[0] == "start") == k, ev
    assert "is a CPU-only build" in res.stderr and "skip  half0A-2-half0B" in res.stderr


@pytest.mark.slow   # child processes (builds, kills, several commands): the full tier
def test_net_gpus_and_gpus_are_checked():
    res = tinyrun.run_cli("run", "--plan", "tiny", "--gpus", "0", "--net-gpus", "base-*=2")
    assert res.returncode == 2 and "needs 2 GPUs; --gpus gives 1" in res.stderr
    res = tinyrun.run_cli("run", "--plan", "tiny", "--gpus", "0,1,2", "--net-gpus", "base-*=3")
    assert res.returncode == 2 and "batch of 32 cannot be split evenly over 3 GPUs" in res.stderr
    res = tinyrun.run_cli("run", "--plan", "tiny", "--gpus", "0,0")
    assert res.returncode == 2 and "argument --gpus: '0,0': expected a GPU number or distinct numbers" in res.stderr


# ---------------------------------------------------------------------------- one net on several GPUs

@pytest.mark.requires_caffe
def test_multi_gpu_caffe_command_and_split_batch(tmp_path, tmp_path_factory):
    from transfer.train import caffe_proc, options, runfiles, trainer
    cmd = caffe_proc.caffe_command(Path("solver.prototxt"), (0, 1), Path("init.solverstate"))
    assert cmd[-1] == "-gpu=0,1" and cmd[1] == "train"
    assert caffe_proc.caffe_command(Path("s"), 3, Path("i"))[-1] == "-gpu=3"
    assert not any(a.startswith("-gpu") for a in caffe_proc.caffe_command(Path("s"), None, Path("i")))
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory))
    net = plan.net("base-half0A")
    assert plan.model.train_batch == 32
    runfiles.write_run_files(plan, net, "GPU", gpus=2)
    assert runfiles.per_gpu_batch_of(net.run.net_copy("train")) == 16      # 2 x 16: the plan's 32
    assert runfiles.per_gpu_batch_of(net.run.net_copy("test")) == plan.model.test_batch
    assert "solver_mode: GPU" in net.run.net_copy("solver").read_text()
    runfiles.write_run_files(plan, net, "GPU", gpus=1)
    assert runfiles.per_gpu_batch_of(net.run.net_copy("train")) == 32
    rec = trainer._batch_record(net, options.Device("GPU", (0, 1)))
    assert rec == {"gpus": [0, 1], "batch_per_gpu": 32, "effective_batch": 64}  # (the gpus=1 copy now)
    assert options.per_gpu_batch(256, 2) == 128 and options.per_gpu_batch(256, 8) == 32
    with pytest.raises(TransferError, match="batch of 256 cannot be split evenly over 3 GPUs"):
        options.per_gpu_batch(256, 3)


@pytest.mark.slow   # child processes (builds, kills, several commands): the full tier
def test_train_gpu_list_is_checked_before_anything_is_written(tmp_path, tmp_path_factory):
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory))
    net = plan.net("base-half0A")
    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--gpu", "0,1,2")
    assert res.returncode == 2 and "batch of 32 cannot be split evenly over 3 GPUs" in res.stderr
    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--gpu", "0,0")
    assert res.returncode == 2 and "argument --gpu: '0,0'" in res.stderr
    assert not net.run.path.exists()


# ---------------------------------------------------------------------------- the simulator

@pytest.fixture(scope="module")
def paper():
    return load_plan("paper")


def test_committed_figures_say_where_each_number_comes_from():
    fig = load_figures()
    assert fig.alone_sec_per_iter == pytest.approx(0.0639)
    assert fig.throughput == {1: 1.0, 2: 1.19, 3: 1.19} and fig.efficiency == {2: 0.9}
    assert not fig.multi_gpu_measured and fig.sources["multi_gpu"].startswith("assumption")
    assert fig.slowdown(2) == pytest.approx(2 / 1.19) and fig.speedup(2) == pytest.approx(1.8)
    assert DEFAULT_FIGURES.read_text().count("source:") >= 3


@pytest.mark.parametrize("change, message", [
    ({"alone_ms_per_iter": -1}, "alone_ms_per_iter: -1 is out of range"),
    ({"packing": {"throughput": {3: 1.2}, "source": "x"}}, "no figure for 2 nets at once"),
    ({"packing": {"throughput": {2: 1.19}}}, "packing: missing field 'source'"),
    ({"multi_gpu": {"efficiency": {2: 1.5}, "measured": False, "source": "x"}}, "efficiency.2: 1.5 is out of range"),
    ({"spead": 1}, "unknown field 'spead'"),
])
def test_bad_figures_are_named(tmp_path, change, message):
    data = yaml.safe_load(DEFAULT_FIGURES.read_text())
    data.update(change)
    path = tmp_path / "fig.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TransferError, match=re.escape(message)) as exc:
        load_figures(path)
    assert str(path) in str(exc.value)


def test_packing_is_chosen_only_when_the_figures_say_it_pays(paper):
    fig = load_figures()
    flat = dataclasses.replace(fig, throughput={1: 1.0, 2: 1.0, 3: 1.0})   # sharing a GPU gains nothing
    for gpus in (8, 64):
        pays = schedule.simulate("paper", paper.nets, gpus, fig.alone_sec_per_iter, figures=fig, nets_per_gpu="auto")
        alone = schedule.simulate("paper", paper.nets, gpus, fig.alone_sec_per_iter, figures=fig)
        assert pays["nets_per_gpu"] > 1 and pays["makespan"] < alone["makespan"]
        assert alone["makespan"] == pytest.approx(
            schedule.simulate("paper", paper.nets, gpus, fig.alone_sec_per_iter)["makespan"])
        none = schedule.simulate("paper", paper.nets, gpus, fig.alone_sec_per_iter, figures=flat,
                                 nets_per_gpu="auto")
        assert none["nets_per_gpu"] == 1 and none["makespan"] == pytest.approx(alone["makespan"])
    # 8 GPUs, 2 nets each: within 1% of the bound (total work / (8 GPUs x 1.19 nets' worth)).
    eight = schedule.simulate("paper", paper.nets, 8, fig.alone_sec_per_iter, figures=fig, nets_per_gpu=2)
    assert 1 - 1e-9 <= eight["ratio"] < 1.01


def test_multi_gpu_on_the_critical_path_shortens_the_plan(paper):
    fig = load_figures()
    one = schedule.simulate("paper", paper.nets, 128, fig.alone_sec_per_iter, figures=fig)
    wide = schedule.simulate("paper", paper.nets, 128, fig.alone_sec_per_iter, figures=fig, multi_gpu=True)
    assert wide["makespan"] < one["makespan"] and wide["multi_gpu_nets"]
    assert set(wide["multi_gpu_nets"].values()) == {2} and "base-half0A" in wide["multi_gpu_nets"]
    # Where every GPU is busy anyway (8 GPUs, 170 nets), two GPUs a net only lose to the efficiency.
    busy = schedule.simulate("paper", paper.nets, 8, fig.alone_sec_per_iter, figures=fig, multi_gpu=True)
    assert busy["multi_gpu_nets"] == {}


def test_pack_schedule_of_one_net_a_gpu_is_the_list_schedule(paper):
    jobs = schedule.jobs_of(paper.nets, 1.0)
    for gpus in (8, 40):
        a = schedule.list_schedule(jobs, gpus)
        b = schedule.pack_schedule(jobs, gpus, 1, {1: 1.0})
        assert max(e for _, e in a.values()) == pytest.approx(max(e for _, e in b.values()))


# ---------------------------------------------------------------------------- the simulator's choice, applied

def _figures(root: Path, throughput: dict[int, float], efficiency: dict[int, float]) -> Path:
    data = yaml.safe_load(DEFAULT_FIGURES.read_text())
    data["packing"]["throughput"], data["multi_gpu"]["efficiency"] = throughput, efficiency
    path = root / f"fig-{len(list(root.glob('fig-*')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow   # simulate, run and submit, on two GPU counts
def test_auto_placement_runs_and_submits_what_the_simulator_chose(tmp_path, tmp_path_factory):
    """`run` and `submit` with --nets-per-gpu auto --multi-gpu auto place the nets as `plan simulate`
    reports: on 4 GPUs every net of the tiny plan on 2 of them, on 2 GPUs two nets a GPU."""
    if gpu.current_build().gpu is not False:
        pytest.skip("the Caffe in use is not a CPU-only build")
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory))
    auto = ["--nets-per-gpu", "auto", "--multi-gpu", "auto", "--figures",
            str(_figures(tmp_path, {1: 1.0, 2: 1.6}, {2: 0.95}))]
    no_cluster = {"SLURM_CONF": str(tmp_path / "no-such.conf")}
    for gpus, k, wide in ((4, 1, {n.name: 2 for n in plan.nets}), (2, 2, {})):
        res = tinyrun.run_cli("plan", "simulate", "--plan", str(plan.path), "--gpus", str(gpus), *auto, "--json")
        sim = json.loads(res.stdout)
        assert (sim["nets_per_gpu"], sim["multi_gpu_nets"]) == (k, wide), res.stdout
        run = tinyrun.run_cli("run", "--plan", str(plan.path), "--gpus", ",".join(map(str, range(gpus))), *auto)
        assert run.returncode == 1 and f"placement: {k} net(s) a GPU; on several GPUs: " in run.stderr, run.stderr
        starts = sorted(where for what, _, where in _events(run.stderr) if what == "start")
        assert starts == (["GPUs 0,1", "GPUs 2,3"] if wide else ["GPU 0", "GPU 1"]), run.stderr
        assert (f"{gpus * k} at a time on GPUs" in run.stderr) and ((k > 1) == (f", {k} a GPU" in run.stderr))
        sub = tinyrun.run_cli("submit", "--plan", str(plan.path), "--dry-run", "--cluster-gpus", str(gpus), *auto,
                              env=no_cluster)
        assert sub.returncode == 0, sub.stderr
        jobs = [line.split()[-1] for line in sub.stdout.splitlines() if line.startswith("would submit")]
        base = plan.net("base-half0A").run.job_script.read_text()
        if wide:   # one job a net, each on 2 GPUs with the batch split
            assert len(jobs) == len(plan.nets) and "#SBATCH --gres=gpu:2" in base and "--gpu 0,1 --precision fp32" in base
        else:      # packs of two nets of one wave, each pack on one GPU
            assert len(jobs) == len(plan.nets) // 2 and "#SBATCH --gres=gpu:1" in base
            assert "--gpus 0 --nets-per-gpu 2" in base, base
    bad = tinyrun.run_cli("submit", "--plan", str(plan.path), "--dry-run", *auto, env=no_cluster)
    assert bad.returncode == 2 and "need --cluster-gpus N" in bad.stderr
    # A width given by hand is checked before the simulator uses it.
    three = ["--net-gpus", "base-*=3", *auto]
    bad = tinyrun.run_cli("run", "--plan", str(plan.path), "--gpus", "0,1,2", *three)
    assert bad.returncode == 2 and "batch of 32 cannot be split evenly over 3 GPUs" in bad.stderr, bad.stderr
    bad = tinyrun.run_cli("submit", "--plan", str(plan.path), "--dry-run", "--cluster-gpus", "2", *three, env=no_cluster)
    assert bad.returncode == 2 and "needs 3 GPUs; --cluster-gpus gives 2" in bad.stderr, bad.stderr
    cpu = tinyrun.run_cli("run", "--plan", str(plan.path), "--cpu", *auto)
    assert cpu.returncode == 2 and "need --gpus" in cpu.stderr


def test_auto_widths_divide_the_batch_and_count_only_what_is_left(tmp_path):
    """A width that would split the batch unevenly is never chosen, though the figures favour it;
    the simulation counts the iterations a net has left after its newest snapshot, and no done net."""
    plan = tinyrun.write_plan_copy(tmp_path, tmp_path / "data", write_nets=False)
    assert plan.model.train_batch == 32
    fig = _figures(tmp_path, {1: 1.0}, {2: 0.95, 3: 1.0})
    free = schedule.simulate(plan.name, plan.nets, 6, figures=load_figures(fig), multi_gpu=True)
    assert 3 in free["multi_gpu_nets"].values()       # 3 GPUs would be chosen, were it allowed
    got = placement.choose(plan, plan.nets, 6, 1, True, figures=fig)
    assert got.chosen and got.net_gpus and set(got.net_gpus.values()) == {2}
    base, dep = plan.net("base-half0A"), plan.net("half0A-2-half0B")
    base.run.snapshots_dir.mkdir(parents=True)
    (base.run.snapshots_dir / f"{base.name}_iter_{base.max_iter - 10}.solverstate").write_bytes(b"")
    left = {n.name: n for n in placement.nets_left(plan, plan.nets)}
    assert left[base.name].max_iter == 10 and left[dep.name].max_iter == dep.max_iter
    assert left[dep.name].base == base.name
    base.run.final_weights.write_bytes(b"")       # done: DONE beside the final weights
    base.run.write_done({"net": base.name})
    left = {n.name: n for n in placement.nets_left(plan, plan.nets)}
    assert base.name not in left and len(left) == len(plan.nets) - 1


def test_simulate_cli_prints_the_choices(capsys):
    res = tinyrun.run_cli("plan", "simulate", "--plan", "paper", "--gpus", "8", "--nets-per-gpu", "auto",
                          "--multi-gpu", "auto")
    assert res.returncode == 0, res.stderr
    assert "chosen          2 net(s) a GPU" in res.stdout and "63.9 ms/iteration" in res.stdout
    assert re.search(r"makespan\s+5\.\d\d days", res.stdout), res.stdout
    assert "(an assumption, not measured)" in res.stdout
    bad = tinyrun.run_cli("plan", "simulate", "--gpus", "8", "--figures", "/nonexistent/fig.yaml")
    assert bad.returncode == 2 and "--figures /nonexistent/fig.yaml: cannot read it" in bad.stderr
