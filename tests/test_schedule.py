"""The scheduling order and the makespan simulator: hand-checked small plans, then the paper's plan."""
from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import pytest

from transfer.core.errors import TransferError
from transfer.plan.load import load_plan
from transfer.plan import cli as plan_cli, schedule
from transfer.plan.schedule import DAY, jobs_of, list_schedule, one_gpu_bound, order, speedup


def toy(*nets: tuple[str, str | None, int]) -> SimpleNamespace:
    """A plan-like object: (name, base, iterations); sec_per_iter=1 makes iterations seconds."""
    return SimpleNamespace(name="toy", nets=[SimpleNamespace(name=n, base=b, max_iter=it) for n, b, it in nets])


def simulate(plan, *args, **kwargs) -> dict:
    return schedule.simulate(plan.name, plan.nets, *args, **kwargs)


def test_chain_and_independent_net_by_hand():
    plan = toy(("a", None, 10), ("b", "a", 5), ("c", None, 8))
    one = simulate(plan, 1, 1.0)
    assert one["makespan"] == 23 and one["lower_bound"] == 23 and one["ratio"] == 1
    # a has the longest tail (15) so it goes first; then c (tail 8) before b (tail 5).
    assert one["start"] == {"a": 0, "c": 10, "b": 18}
    two = simulate(plan, 2, 1.0)
    assert two["start"] == {"a": 0, "c": 0, "b": 10}
    assert two["makespan"] == 15 and two["critical_path"] == 15 and two["total_work"] == 23
    assert two["lower_bound"] == 15


def test_tail_work_beats_own_length():
    # x is short but 'y' waits on it: x must start first on one GPU, before the longer z.
    plan = toy(("x", None, 2), ("y", "x", 10), ("z", None, 11))
    assert [n.name for n in order(plan.nets)] == ["x", "z", "y"]
    res = simulate(plan, 2, 1.0)
    assert res["start"]["x"] == 0 and res["start"]["y"] == 2 and res["makespan"] == 12


def test_short_nets_fill_the_end():
    # Equal tails: the longer job first (LPT), so the two short ones share the last slot.
    plan = toy(("l1", None, 4), ("l2", None, 4), ("s1", None, 2), ("s2", None, 2))
    res = simulate(plan, 2, 1.0)
    assert res["makespan"] == 6 and res["ratio"] == 1


def test_wave_bound_by_hand():
    # Two bases of 1 s with three 1-s children each, 2 GPUs: children fill 3 waves after t=1.
    nets = [("A", None, 1), ("B", None, 1)] + [(f"{p}{i}", p, 1) for p in "AB" for i in range(3)]
    jobs = jobs_of(toy(*nets).nets, 1.0)
    assert one_gpu_bound(jobs, 2) == 4
    assert max(e for _, e in list_schedule(jobs, 2).values()) == 4
    assert one_gpu_bound(jobs, 3) == 3 and one_gpu_bound(jobs, 6) == 2


def test_bases_come_before_their_dependents_in_order():
    plan = load_plan("paper")
    seen: set[str] = set()
    for net in order(plan.nets):
        assert net.base is None or net.base in seen, net.name
        seen.add(net.name)
    assert len(seen) == 170


def test_multi_gpu_nets():
    assert speedup(1) == 1 and 1 < speedup(2) < 2
    plan = toy(("w", None, 30), ("n", None, 10))
    res = simulate(plan, 2, 1.0, net_gpus={"w": 2})
    # The wide net (30 / 1.82 = 16.4 s, the longer tail) occupies both GPUs; the narrow one follows.
    assert res["start"] == {"w": 0, "n": 30 / speedup(2)}
    assert res["total_work"] == pytest.approx(10 + 2 * 30 / speedup(2))
    with pytest.raises(TransferError, match="needs 2 GPUs; only 1"):
        simulate(plan, 1, 1.0, net_gpus={"w": 2})
    over = simulate(toy(("a", None, 10)), 4, 1.0, net_gpus={"a": 4})
    assert over["makespan"] == pytest.approx(10 / speedup(4))


def test_bad_values_are_named():
    with pytest.raises(TransferError, match="--gpus must be at least 1, not 0"):
        simulate(toy(("a", None, 1)), 0, 1.0)
    with pytest.raises(TransferError, match="--sec-per-iter must be positive, not -1"):
        simulate(toy(("a", None, 1)), 1, -1)


@pytest.fixture(scope="module")
def paper():
    return load_plan("paper")


def test_paper_totals(paper):
    res = simulate(paper, 1)
    # 158 nets of 450,000 iterations and 12 reduced nets of 200,000, at 1.7 s an iteration.
    assert res["total_work"] == pytest.approx((158 * 450_000 + 12 * 200_000) * 1.7)
    assert res["critical_path"] == pytest.approx(900_000 * 1.7)
    assert res["total_work_gpu_days"] == pytest.approx(1446.18, abs=0.01)


@pytest.mark.parametrize("gpus", [1, 4, 8, 16, 256])
def test_paper_within_five_percent_of_lower_bound(paper, gpus):
    res = simulate(paper, gpus)
    assert res["makespan"] >= res["lower_bound"] * (1 - 1e-12)
    assert res["ratio"] <= 1.05, res["ratio"]


@pytest.mark.parametrize("gpus", [32, 40, 48, 64, 96, 128])
def test_paper_optimal_among_one_gpu_a_net_schedules(paper, gpus):
    res = simulate(paper, gpus)
    # The waves bound is proven; meeting it means no one-GPU-a-net schedule is shorter.
    assert res["one_gpu_optimal"], (res["makespan"], res["one_gpu_bound"])
    net_days = 450_000 * 1.7 / DAY
    waves = -(-140 // gpus)  # 140 copy nets after the first wave of bases
    assert res["makespan"] == pytest.approx((1 + waves) * net_days * DAY)


def test_more_gpus_a_net_close_the_gap(paper):
    one = simulate(paper, 128)
    wide = simulate(paper, 128, net_gpus={"base-*": 2})
    assert wide["multi_gpu"] and wide["makespan"] < one["makespan"]


def test_simulate_cli_json(paper, capsys):
    parser = argparse.ArgumentParser()
    plan_cli.register(parser.add_subparsers())
    args = parser.parse_args(["plan", "simulate", "--plan", "paper", "--gpus", "16", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("makespan", "lower_bound", "ratio", "gpus", "critical_path", "total_work",
                "makespan_days", "lower_bound_days"):
        assert key in out
    assert out["gpus"] == 16 and out["ratio"] == pytest.approx(out["makespan"] / out["lower_bound"])
    args = parser.parse_args(["plan", "simulate", "--plan", "tiny", "--gpus", "2", "--net-gpus", "base-*=2"])
    assert args.func(args) == 0
    assert "makespan" in capsys.readouterr().out
    args = parser.parse_args(["plan", "simulate", "--gpus", "2", "--net-gpus", "base-*=two"])
    with pytest.raises(TransferError, match="base-\\*=two"):
        args.func(args)
