"""`transfer submit` against a real one-node SLURM (tests/slurm_cluster.py), and its parts without one.

The end-to-end test trains the tiny plan with the real `transfer train` on CPU inside SLURM jobs:
bases before the nets that copy from them, one base interrupted as preemption would (TERM to
the batch shell) and continued by its follow-up with its dependents re-pointed, and a net longer
than its one-minute time limit continued until done.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml


import tinyrun  # noqa: E402
from slurm_cluster import Cluster, missing_binaries  # noqa: E402

from transfer import REPO  # noqa: E402
from transfer.core.errors import TransferError  # noqa: E402
from transfer.plan.load import load_plan  # noqa: E402
from transfer.train.queue import job_name, queued_jobs  # noqa: E402
from transfer.train.slurm import nice_values, read_records, state_file  # noqa: E402


def submit(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "transfer", "submit", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=env or os.environ.copy())
    if check and proc.returncode:
        raise AssertionError(f"transfer submit {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def plan_copy(root: Path, name: str = "slurmtest") -> Path:
    """The tiny plan with its runs under `root`; enough for submitting (nothing is trained)."""
    config = yaml.safe_load((REPO / "transfer" / "plans" / "tiny.yaml").read_text())
    config.update(name=name, runs_dir=str(root / "runs"), nets_dir=str(root / "prototxt"),
                  solvers_dir=str(root / "solvers"))
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def job_starts(net) -> list[int]:
    """Start times (epoch s) of every SLURM job of a net, from the lines its job script prints."""
    starts = []
    for out in net.run.slurm_outputs():
        starts += [int(m) for m in re.findall(r"^transfer-job: start (\d+)", out.read_text(), re.M)]
    return sorted(starts)


def wait_until(pred, timeout: float, what: str, cluster: Cluster | None = None, every: float = 1.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(every)
    queue = cluster.squeue() if cluster else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\nsqueue:\n{queue}")


# ---------------------------------------------------------------------------- without a cluster

def test_dry_run_writes_readable_job_scripts(tmp_path):
    path = plan_copy(tmp_path)
    env = {**os.environ, "SLURM_CONF": str(tmp_path / "no-such.conf")}  # no cluster: queue reads empty
    out = submit("--plan", str(path), "--only", "half0A-2-half0B", "--dry-run", "--partition", "gpu",
                 "--account", "lab", "--time", "2-00:00:00", env=env).stdout
    # The base it copies from is added, and comes first.
    assert re.search(r"would submit.*base-half0A\n.*would submit.*half0A-2-half0B\s+after <base-half0A>", out)
    plan = load_plan(str(path))
    script = plan.net("half0A-2-half0B").run.job_script
    text = script.read_text()
    assert re.fullmatch(r"transfer:slurmtest-[0-9a-f]{6}:half0A-2-half0B", job_name(plan, "half0A-2-half0B"))
    for line in (f"#SBATCH --job-name={job_name(plan, 'half0A-2-half0B')}", "#SBATCH --partition=gpu",
                 "#SBATCH --account=lab", "#SBATCH --time=2-00:00:00", "#SBATCH --signal=B:TERM@120",
                 "#SBATCH --gres=gpu:1", 'train "$NET" --plan "$PLAN" --gpu 0 --precision fp32 --no-deterministic &', f"PLAN={path}"):
        assert line in text, line
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert not state_file(plan).exists()  # a dry run records nothing
    cpu = submit("--plan", str(path), "--only", "base-half0B", "--dry-run", "--cpu", env=env)
    text = plan.net("base-half0B").run.job_script.read_text()
    assert "--cpu --precision fp32 --no-deterministic &" in text and "#SBATCH --cpus-per-task=1" in text and "gres" not in text, cpu.stdout


def test_bad_time_is_named(tmp_path):
    proc = submit("--plan", str(plan_copy(tmp_path)), "--time", "two days", "--dry-run", check=False)
    assert proc.returncode == 2 and "--time 'two days'" in proc.stderr


def test_nice_follows_tail_work():
    plan = load_plan("paper")
    nice = nice_values(plan, plan.nets, 100)
    assert nice["base-half0A"] == 0 and nice["half0A-3-half0B"] == 50 and nice["random-1"] == 50
    assert nice["reduced-0001"] == round(100 * (1 - 200_000 / 900_000))


def test_queued_jobs_without_slurm(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue: `transfer status` just shows no column
    plan = load_plan("tiny")
    assert queued_jobs(plan) == {}
    with pytest.raises(TransferError, match="squeue"):
        queued_jobs(plan, strict=True)


# ---------------------------------------------------------------------------- a real cluster

@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    missing = missing_binaries()
    if missing:
        pytest.skip(f"SLURM is not installed here (missing {', '.join(missing)}; Debian: slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("starting munged and slurmd for a test cluster needs root")
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    old = os.environ.get("SLURM_CONF")
    try:
        c.start()
        os.environ["SLURM_CONF"] = str(c.conf)  # for queued_jobs() in this process and every subprocess
        yield c
    finally:
        c.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def _reason(cluster: Cluster, job: str) -> str:
    for line in cluster.squeue().splitlines():
        parts = line.split(" ", 3)
        if parts[0] == job:
            return parts[3] if len(parts) > 3 else ""
    return ""


@pytest.mark.slow
def test_submit_again_skips_queued_and_replaces_stale(cluster, tmp_path):
    path = plan_copy(tmp_path, "slurmstale")
    plan = load_plan(str(path))
    later = "--sbatch-arg=--begin=now+1hour"  # nothing starts: this test is about the queue only
    first = submit("--plan", str(path), "--only", "half0B-*", "--cpu", later).stdout
    jobs = queued_jobs(plan)
    assert set(jobs) == {"base-half0B", "half0B-2-half0B", "half0B-6-half0B"}, first
    assert all(j.state == "PENDING" for j in jobs.values()) and str(jobs["base-half0B"]).endswith(" PENDING")
    base = jobs["base-half0B"].id
    dep = subprocess.run(["squeue", "--noheader", "--format=%E", "--jobs", jobs["half0B-2-half0B"].id],
                         capture_output=True, text=True).stdout
    assert f"afterok:{base}" in dep

    again = submit("--plan", str(path), "--only", "half0B-*", "--cpu", later).stdout
    assert "submitted" not in again and "3 queued" in again
    assert queued_jobs(plan) == jobs

    # The base's job goes away without finishing: its dependents can never start.
    subprocess.run(["scancel", base], check=True)
    stale = jobs["half0B-2-half0B"].id
    wait_until(lambda: _reason(cluster, stale) == "DependencyNeverSatisfied", 60, "a stale dependency", cluster)
    third = submit("--plan", str(path), "--only", "half0B-*", "--cpu", later).stdout
    assert "cancelled" in third and "submitted" in third, third
    new = queued_jobs(plan)
    assert set(new) == set(jobs) and not set(j.id for j in new.values()) & set(j.id for j in jobs.values())
    dep = subprocess.run(["squeue", "--noheader", "--format=%E", "--jobs", new["half0B-6-half0B"].id],
                         capture_output=True, text=True).stdout
    assert f"afterok:{new['base-half0B'].id}" in dep
    actions = [(r["action"], r["net"]) for r in read_records(plan)]
    assert actions.count(("submit", "base-half0B")) == 2 and ("cancel", "half0B-2-half0B") in actions
    subprocess.run(["scancel", *[j.id for j in new.values()]], check=True)


def _job_tail(net, lines: int = 6) -> str:
    outs = net.run.slurm_outputs()
    return "\n".join(outs[-1].read_text(errors="replace").splitlines()[-lines:]) if outs else "(no job output)"


def _iterations_logged(plan, net) -> bool:
    return any("Iteration" in f.read_text(errors="replace") for f in net.run.log_files())


@pytest.mark.requires_caffe
def test_tiny_plan_trains_to_done_under_slurm(cluster, tmp_path_factory):
    data = tinyrun.shared_data(tmp_path_factory)
    # A net far longer than any machine trains in its 1-minute time limit (told to stop 30 s, slurm: up
    # to 60 s, before it): it must be stopped by the time limit, whatever this machine's speed.
    long = tinyrun.write_plan_copy(tmp_path_factory.mktemp("long"), data,
                                   solver={"max_iter": 10 ** 6, "snapshot": 10 ** 6})   # (a stop snapshots)
    # Nets long enough (some seconds each even on a fast machine) for base-half0B to be caught training.
    tiny = tinyrun.write_plan_copy(tmp_path_factory.mktemp("tiny"), data, solver={"max_iter": 200, "snapshot": 50})

    # The long net alone first: stopped by its time limit, it snapshots and continues in a follow-up job,
    # which resumes from that snapshot; once it has, its job is killed (no trap, so no further follow-up):
    # finishing 10**6 iterations is not the point.
    submit("--plan", str(long.path), "--only", "base-half0A", "--cpu", "--time", "1", "--signal-lead", "30")
    ln = long.net("base-half0A")

    def resumed_in_a_follow_up() -> bool:
        return any("resuming at iteration" in f.read_text(errors="replace") for f in ln.run.slurm_outputs())
    wait_until(resumed_in_a_follow_up, 600, "the long net to resume in a follow-up job", cluster, every=2)
    # End its chain: with the partition down no job starts, so a cancelled job's follow-up (a cancel is a
    # TERM, answered like a time limit) waits, and is cancelled in turn; then the partition comes back.
    subprocess.run(["scontrol", "update", "PartitionName=debug", "State=DOWN"], check=True)
    try:
        def chain_ended() -> bool:
            jobs = queued_jobs(long)
            for job in jobs.values():
                subprocess.run(["scancel", job.id], check=False)
            return not jobs
        wait_until(chain_ended, 180, "the long net's jobs to end", cluster, every=3)
    finally:
        subprocess.run(["scontrol", "update", "PartitionName=debug", "State=UP"], check=True)

    out = submit("--plan", str(tiny.path), "--cpu", "--time", "10").stdout
    assert out.count("submitted") == len(tiny.nets), out

    # Preempt base-half0B once it is training: TERM to the batch shell, as slurm does.
    b = tiny.net("base-half0B")
    first_job = queued_jobs(tiny)["base-half0B"].id
    wait_until(lambda: _iterations_logged(tiny, b) or b.run.is_done(), 240, "base-half0B to train", cluster,
               every=0.3)
    assert not b.run.is_done(), "base-half0B finished before it could be interrupted"
    subprocess.run(["scancel", "--signal=TERM", "--batch", first_job], check=True)

    # A follow-up is queued before the job it replaces ends: an empty queue means nothing more will run.
    wait_until(lambda: not queued_jobs(tiny) and not queued_jobs(long), 1200, "the queue to empty", cluster,
               every=2)
    left = {n.name: _job_tail(n) for n in tiny.nets if not n.run.is_done()}
    assert not left, "nets not done:\n" + "\n".join(f"{k}:\n{v}" for k, v in left.items())

    # Bases before the nets that copy from them: no job of a copy started before its base was done.
    for net in tiny.nets:
        assert job_starts(net), net.name
        if net.base:
            base_done = tiny.net(net.base).run.done_file.stat().st_mtime
            assert job_starts(net)[0] >= int(base_done), (net.name, net.base)
        assert _iterations_logged(tiny, net), net.name

    # The interrupted base continued in a follow-up that took over its dependents.
    recs = read_records(tiny)
    follow = [r for r in recs if r["action"] == "follow-up" and r["net"] == "base-half0B"]
    assert follow and follow[0]["replaces"] == first_job, recs
    repointed = {r["net"] for r in recs if r["action"] == "re-point" and r["after"] == follow[0]["job"]}
    assert repointed == {d.name for d in tiny.dependents("base-half0B")}, recs
    assert len(job_starts(b)) == 2

    # The long net outlived its time limit, was told in time, snapshotted, and went on in a follow-up.
    outs = "".join(f.read_text() for f in ln.run.slurm_outputs())
    assert "SIGTERM" in outs and len(job_starts(ln)) >= 2, outs
    assert [r for r in read_records(long) if r["action"] == "follow-up"]
    first = ln.run.attempts()[0]
    assert first["stopped"] == "SIGTERM" and ln.run.snapshots(), first   # stopped by the signal, with a snapshot
    assert not ln.run.is_done()


def test_job_script_values_cannot_run_as_commands(tmp_path):
    """The generated script, run by bash: a net name, plan argument and paths full of shell syntax
    (a folder with blanks, ';', '$(...)', quotes) reach `transfer train` as the words they are."""
    from transfer.core.errors import TransferError
    from transfer.plan.rundir import RunDir
    from transfer.train.jobscript import JobOptions, job_script
    from transfer.train.options import RunOptions

    repo = tmp_path / "my repo; touch PWNED1"
    repo.mkdir()
    net = "x$(touch PWNED2);`touch PWNED3`'\"a b"
    plan_arg = str(tmp_path / "plans dir" / "p $(touch PWNED4).yaml")
    run = RunDir(repo / "runs" / "n", net, 10)
    words = tmp_path / "words.txt"
    # the "transfer" command of the job: writes the words it is given, one a line
    prog = "import sys; open(sys.argv[1], 'a').write(chr(10).join(sys.argv[2:]) + chr(10))"
    opts = JobOptions(plan_arg=plan_arg, run=RunOptions(cpu=True),
                      transfer_cmd=shlex.join([sys.executable, "-c", prog, str(words)]))
    script = tmp_path / "job.sh"
    script.write_text(job_script("p", net, "transfer:p-abcdef:n", run, opts, repo))
    res = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert words.read_text().splitlines() == ["train", net, "--plan", plan_arg, "--cpu", "--precision", "fp32",
                                              "--no-deterministic"]
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    text = script.read_text()
    assert f'#SBATCH --output="{repo}/runs/n/slurm/%j.out"' in text   # sbatch splits at blanks
    with pytest.raises(TransferError, match=r"net name 'a\\nrm -rf x' holds a control character"):
        job_script("p", "a\nrm -rf x", "j", run, opts, repo)
    # a --transfer-cmd that is no command line is refused naming it, before a script is written
    for cmd, why in (("python -m 'transfer", r"--transfer-cmd \"python -m 'transfer\": not a command line"),
                     ("  ", r"--transfer-cmd is empty"),
                     ("python\n-m transfer", r"--transfer-cmd 'python\\n-m transfer' holds a control character")):
        with pytest.raises(TransferError, match=why):
            job_script("p", "n", "j", run, JobOptions(plan_arg=plan_arg, run=RunOptions(cpu=True), transfer_cmd=cmd),
                       repo)


# ---------------------------------------------------------------------------- several nets a GPU

@pytest.mark.slow   # child processes (builds, kills, several commands): the full tier
def test_pack_job_scripts(tmp_path):
    """--nets-per-gpu 2: one GPU a job, the nets of one wave two by two, each pack run by the runner."""
    from transfer.train.slurm import repointed
    path = plan_copy(tmp_path)
    env = {**os.environ, "SLURM_CONF": str(tmp_path / "no-such.conf")}
    out = submit("--plan", str(path), "--dry-run", "--nets-per-gpu", "2", env=env).stdout
    plan = load_plan(str(path))
    lines = [l for l in out.splitlines() if l.startswith("would submit")]
    # 2 bases in one pack; their 6 dependents in 3 packs, each after the bases' job.
    assert len(lines) == 4, out
    assert "base-half0A+base-half0B" in lines[0] and "after" not in lines[0]
    assert all(l.endswith("after <base-half0A+base-half0B>") for l in lines[1:]), out
    first = lines[1].split()[3].split("+")
    assert len(first) == 2 and all(plan.net(n).base for n in first)
    text = plan.net(first[0]).run.job_script.read_text()
    for line in ("#SBATCH --gres=gpu:1", f"#SBATCH --job-name={job_name(plan, '+'.join(first))}",
                 f'run --only {first[0]},{first[1]} --plan "$PLAN" --gpus 0 --nets-per-gpu 2'):
        assert line in text, line
    assert text.count("DONE ]") == 2 and subprocess.run(["bash", "-n", "-c", text]).returncode == 0
    shards = submit("--plan", str(path), "--only", "base-half0A", "--dry-run", "--shards", env=env)
    assert "#SBATCH --gres=shard:1" in plan.net("base-half0A").run.job_script.read_text(), shards.stdout
    wide = submit("--plan", str(path), "--only", "base-half0A", "--dry-run", "--gpus-per-job", "2", env=env)
    text = plan.net("base-half0A").run.job_script.read_text()
    assert "#SBATCH --gres=gpu:2" in text and 'train "$NET" --plan "$PLAN" --gpu 0,1 --precision fp32' in text, wide.stdout
    both = submit("--plan", str(path), "--dry-run", "--gpus-per-job", "2", "--nets-per-gpu", "2", env=env,
                  check=False)
    assert both.returncode == 2 and "not both" in both.stderr
    bad = submit("--plan", str(path), "--dry-run", "--nets-per-gpu", "0", env=env, check=False)
    assert bad.returncode == 2 and "--nets-per-gpu '0': expected a positive integer" in bad.stderr
    # A follow-up takes over from job 12; the dependency on job 13 stays, a satisfied one goes.
    assert repointed("afterok:12(unfulfilled),afterok:13(unfulfilled)", "12", "20") == "afterok:13:20"
    assert repointed("afterok:11(satisfied),afterok:12(unfulfilled)", "12", "20") == "afterok:20"
    assert repointed("afterok:12", "12", "20") == "afterok:20"


@pytest.mark.requires_caffe
def test_pack_trains_two_nets_in_one_job(cluster, tmp_path_factory):
    """A real queue (CPU): the base's job, then one job training its two dependents at once."""
    plan = tinyrun.write_plan_copy(tmp_path_factory.mktemp("pack"), tinyrun.shared_data(tmp_path_factory),
                                   solver={"max_iter": 20, "snapshot": 20, "test_interval": 20})
    out = submit("--plan", str(plan.path), "--only", "half0B-*", "--cpu", "--nets-per-gpu", "2", "--time", "10").stdout
    assert out.count("submitted") == 2, out
    subs = [r for r in read_records(plan) if r["action"] == "submit"]
    assert [r["net"] for r in subs] == ["base-half0B", "half0B-2-half0B+half0B-6-half0B"]
    assert subs[1]["after"] == subs[0]["job"]
    wait_until(lambda: not queued_jobs(plan), 300, "the queue to empty", cluster, every=2)
    nets = [plan.net(n) for n in ("base-half0B", "half0B-2-half0B", "half0B-6-half0B")]
    assert all(n.run.is_done() for n in nets), [_job_tail(n) for n in nets]
    # Both dependents ran in the one pack job, together, after their base was done.
    log = "".join(f.read_text() for f in nets[1].run.slurm_outputs())
    assert "--cpu --jobs 2 " in nets[1].run.job_script.read_text() and "start half0B-2-half0B on CPU" in log, log
    starts = [l for l in log.splitlines() if "] start " in l]
    dones = [i for i, l in enumerate(log.splitlines()) if "] done  " in l]
    assert len(starts) == 2 and log.splitlines().index(starts[1]) < dones[0], log
    assert job_starts(nets[1])[0] >= int(nets[0].run.done_file.stat().st_mtime)
