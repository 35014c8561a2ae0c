"""GPU tier: `--deterministic` gives bit-identical reruns, and each attempt records the cuDNN algorithms
it ran with.

A net of the tiny plan trained twice for 30 iterations from the same seed, in two run directories of
the same data, with `transfer run --deterministic`: the two final caffemodels must have the same
sha256. With cuDNN, each attempt's record in attempts.jsonl lists the algorithms the convolution chose
(parsed from caffe's log: transfer/caffe/cudnn_algos.py), all of them cuDNN-deterministic ones ranked
by heuristics, none a fallback, and the same in both runs. On the CPU variant the reruns must be
identical too; there is no cuDNN, so no algorithm is recorded, which the test checks and says.
"""
from __future__ import annotations

import hashlib

import pytest
import summary
import tinyrun

ITERATIONS = 30
NET = "base-half0B"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(root, data, device):
    plan = tinyrun.write_plan_copy(root, data, solver={"max_iter": ITERATIONS, "snapshot": ITERATIONS,
                                                       "test_interval": 1000})
    net = plan.net(NET)
    where = ["--cpu"] if device is None else ["--gpus", str(device)]
    res = tinyrun.run_cli("run", "--plan", str(plan.path), "--only", NET, *where, "--deterministic",
                          "--jobs", "1", timeout=1200)
    assert res.returncode == 0, res.stdout + res.stderr
    return net


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, device):
    data = tinyrun.shared_data(tmp_path_factory)
    return [_train(tmp_path_factory.mktemp(f"det{k}"), data, device) for k in (1, 2)]


def test_deterministic_reruns_give_the_same_caffemodel(two_runs, device):
    a, b = two_runs
    assert _sha(a.run.init_weights) == _sha(b.run.init_weights)   # the same start, or the test says nothing
    same = _sha(a.run.final_weights) == _sha(b.run.final_weights)
    where = "GPU" if device is not None else "CPU (CPU variant)"
    summary.record("deterministic", f"2 x {ITERATIONS} iterations on the {where}, caffemodel sha256",
                   "identical" if same else "DIFFERENT", same, _sha(a.run.final_weights)[:16])
    assert same, f"{a.run.final_weights} and {b.run.final_weights} differ after --deterministic reruns"
    for net in two_runs:
        attempt = net.run.attempts()[-1]
        assert attempt["deterministic"] is True and attempt["exit"] == 0, attempt


def test_attempts_record_the_cudnn_algorithms(two_runs, device):
    records = [net.run.attempts()[-1] for net in two_runs]
    algos = [r.get("cudnn_algos") for r in records]
    if device is None or not records[0].get("cudnn"):
        why = "CPU variant: no cuDNN" if device is None else "this build has no cuDNN (CAFFE_CUDNN=0)"
        summary.record("deterministic", "cuDNN algorithms in attempts.jsonl", "none recorded", algos == [None, None],
                       why)
        assert algos == [None, None], algos   # nothing is made up where cuDNN did not run
        return
    first = algos[0]
    assert first, f"no cudnn_algos in {two_runs[0].run.path}/attempts.jsonl: {records[0]}"
    layers = {c["layer"] for c in first}
    ok = all(c["deterministic"] == "1" and c["fallback"] == "none" for c in first) and algos[0] == algos[1]
    summary.record("deterministic", "cuDNN algorithms in attempts.jsonl",
                   f"{len(first)} choices, layers {' '.join(sorted(layers))}", ok,
                   "deterministic, no fallback, the same in both runs")
    assert all(c["deterministic"] == "1" for c in first), first
    assert all(c["fallback"] == "none" for c in first), first
    assert algos[0] == algos[1], "the two runs chose different algorithms"
    assert {"conv1", "conv2"} <= layers, layers
