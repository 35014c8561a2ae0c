"""Metrics, Table 1 and the whole report on fake log directories."""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from transfer import metrics, report
from transfer.errors import TransferError
from transfer.metrics import NetMetric
from transfer.plan import Net, load_plan
from transfer.rundir import RunDir

# The paper's pattern, roughly (Figure 2/3, Table S1): the number each fake net's logs yield.
BNB = {1: 0.625, 2: 0.62, 3: 0.60, 4: 0.575, 5: 0.57, 6: 0.605, 7: 0.62}
ANB = {1: 0.625, 2: 0.62, 3: 0.61, 4: 0.59, 5: 0.58, 6: 0.565, 7: 0.545}


def pattern(net: Net) -> float:
    t, n = net.treatment, net.n
    if net.family == "random_split":
        return {"base": 0.625, "selffer": BNB.get(n), "selffer_ft": 0.627,
                "transfer": ANB.get(n), "transfer_ft": 0.64}[t]
    if net.family == "natman":
        base = {"natural": 0.67, "manmade": 0.58}[net.target]
        return base if t == "base" else base - 0.035 * n
    if net.family == "whole":
        return 0.575
    if net.family == "random_weights":
        return max(0.001, 0.575 - 0.2 * n)
    return 0.5 * int(net.name.rsplit("-", 1)[1]) / 1300


def log_2014(values: list[float], step: int = 1000) -> str:
    """A 2014-format log whose validation tests give `values` in order."""
    out = []
    for i, v in enumerate(values, start=1):
        t = f"{i // 60:02d}:{i % 60:02d}"
        out.append(f"I0416 00:{t}.000000 12484 solver.cpp:217] Iteration {i * step - 980}, lr = 0.01")
        out.append(f"I0416 00:{t}.000001 12484 solver.cpp:74] Iteration {i * step - 980}, loss = {6.0 / i:.5f}")
        out.append(f"I0416 00:{t}.100000 12484 solver.cpp:96] Iteration {i * step}, Testing net")
        out.append(f"I0416 00:{t}.200000 12484 solver.cpp:123] Test score #0: {v:.6f}")
        out.append(f"I0416 00:{t}.200001 12484 solver.cpp:123] Test score #1: {2.0 - v:.6f}")
    return "\n".join(out) + "\n"


def values_for(target: float) -> list[float]:
    # two early low tests, then ten whose mean is exactly `target` (the top-10 metric)
    spread = np.linspace(-0.002, 0.002, 10) * min(1.0, target)
    return [0.2 * target, 0.4 * target] + list(target + spread)


def write_released(root: Path, nets: list[Net]) -> None:
    for net in nets:
        d = root / net.released_name
        d.mkdir(parents=True)
        with gzip.open(d / f"140415_235449_{net.released_name}.o240406.gz", "wt") as fh:
            fh.write(log_2014(values_for(pattern(net))))
        (d / "imagenet_train.prototxt").write_text("name: 'CaffeNet'\n")
        (d / "imagenet_mean.binaryproto").write_bytes(b"\x00\x01")
        (d / "imagenet_val_leveldb").mkdir()


# ------------------------------------------------------------------------------ metrics

def test_table1_by_hand() -> None:
    row = metrics.table1_from_points([0.64, 0.66], [0.62, 0.63], [0.63], resamples=500, seed=1)
    assert row["vs_base"] == pytest.approx(0.65 - 0.625)
    assert row["vs_selffer_ft"] == pytest.approx(0.65 - 0.63)
    lo, hi = row["vs_base_ci95"]
    assert 0.64 - 0.63 - 1e-12 <= lo <= row["vs_base"] <= hi <= 0.66 - 0.62 + 1e-12
    assert (row["count_anb_ft"], row["count_base"], row["count_bnb_ft"]) == (2, 2, 1)
    # seeded: the same interval every time
    assert metrics.table1_from_points([0.64, 0.66], [0.62, 0.63], [0.63], 500, 1) == row
    empty = metrics.table1_from_points([], [0.6], [0.6])
    assert empty["vs_base"] is None and empty["vs_base_ci95"] is None


def test_table1_pools_points_over_layer_ranges() -> None:
    plan = load_plan("tiny")  # AnB+ at n=2 and 6; baseB = base-half0B (the only target half)
    vals = {"base-half0B": 0.60, "base-half0A": 0.99, "half0A-2-half0B-ft": 0.62, "half0A-6-half0B-ft": 0.66}
    mets = {k: NetMetric(v, v, v, 60, 3, 1) for k, v in vals.items()}
    t1 = metrics.table1(plan.nets, mets, resamples=100)
    assert t1["1-7"]["vs_base"] == pytest.approx(0.64 - 0.60)
    assert t1["3-7"]["vs_base"] == pytest.approx(0.66 - 0.60)
    assert t1["5-7"]["vs_base"] == pytest.approx(0.06)
    assert t1["1-7"]["vs_selffer_ft"] is None  # the tiny plan has no BnB+


def test_base_b_is_every_target_half() -> None:
    assert len(metrics.base_b_nets(load_plan("paper").nets)) == 8
    # the small plan trains both directions of two splits: every half is some net's target
    assert [n.name for n in metrics.base_b_nets(load_plan("small").nets)] == [
        "base-half0A", "base-half0B", "base-half1A", "base-half1B"]


def test_stats_spread() -> None:
    s = metrics.stats([0.5, 0.7], ["a", "b"])
    assert s["mean"] == pytest.approx(0.6) and s["count"] == 2
    assert s["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert (s["min"], s["max"], s["nets"]) == (0.5, 0.7, ["a", "b"])
    assert metrics.stats([]) is None


# ------------------------------------------------------------------------------ whole report

@pytest.mark.slow  # draws every figure
def test_report_on_released_layout_subset(tmp_path: Path) -> None:
    plan = load_plan("paper")
    # Split 3, the 1000-class base, random weights n>=5 and most reduced nets are absent.
    absent = {n.name for n in plan.nets
              if n.split == "3" or n.family == "whole" or (n.family == "random_weights" and n.n >= 5)
              or (n.family == "reduced" and n.name not in ("reduced-1300", "reduced-0100"))}
    present = [n for n in plan.nets if n.name not in absent]
    results = tmp_path / "results"
    write_released(results, present)
    # one net whose log has no validation test at all
    empty = plan.net("half0A-1-half0B")
    for f in (results / empty.released_name).glob("*.gz"):
        f.unlink()
    (results / empty.released_name / "140415_235449_x.o1").write_text("I0416 00:00:00.0 1 a.cpp:1] hello\n")

    out = tmp_path / "out"
    rep = report.make_report("paper", results, out, "released", resamples=300)

    assert set(rep["missing"]) == absent | {empty.name}
    assert "no validation test" in rep["missing_reasons"][empty.name]
    assert rep["counts"]["with_results"] == len(present) - 1

    rs = rep["random_split"]
    assert rs["baseB"]["mean"] == pytest.approx(0.625) and rs["baseB"]["count"] == 6
    for n in range(1, 8):
        assert rs["BnB"][str(n)]["mean"] == pytest.approx(BNB[n])
        assert rs["AnB"][str(n)]["mean"] == pytest.approx(ANB[n])
    # splits 0-2: selffer AnA (3 per n), transfer AnB and BnA pooled (6 per n)
    assert rs["BnB"]["4"]["count"] == 3 and rs["AnB"]["4"]["count"] == 6
    assert rs["AnB"]["1"]["count"] == 5  # half0A-1-half0B has no tests
    assert rs["AnB+"]["3"]["count"] == 4  # fine-tuned: splits 0 and 1, both directions
    assert rep["table1"]["1-7"]["vs_base"] == pytest.approx(0.015)
    assert rep["table1"]["5-7"]["vs_selffer_ft"] == pytest.approx(0.013)
    assert rep["natman"]["base"]["natural"]["mean"] == pytest.approx(0.67)
    assert rep["natman"]["normalized"]["manmade"]["7"]["mean"] == pytest.approx(-0.245)
    assert rep["drops_n7"]["random_split"] == pytest.approx(0.08)
    assert rep["drops_n7"]["natman"] == pytest.approx(0.245)
    assert rep["random_weights"]["base"] is None and rep["random_weights"]["5"] is None
    assert rep["random_weights"]["normalized"]["1"] is None  # no base to normalize by
    assert rep["reduced"]["0100"]["mean"] == pytest.approx(0.5 * 100 / 1300, abs=1e-6)
    assert rep["nets"]["base-half0B"]["iterations"] == 12000
    e = rep["nets"]["base-half0B"]
    assert e["final"] == pytest.approx(0.625 * 1.002) and e["best"] == e["final"]
    assert e["metric"] == pytest.approx(0.625) and e["tests"] == 12 and e["attempts"] == 1
    assert rep["nets"]["base-all"]["metric"] is None

    q = rep["qualitative"]
    assert q["anb_drops_at_high_n"]["holds"] is True
    assert q["bnb_dips_in_middle"]["holds"] is True
    assert q["anb_ft_at_or_above_base"]["holds"] is True
    assert q["natman_drops_more"]["holds"] is True

    pub = rep["published"]
    assert pub["random_split.baseB.mean"]["difference"] == pytest.approx(0.0)
    assert pub["table1.1-7.vs_base"]["difference"] == pytest.approx(0.015 - 0.016)
    assert pub["random_weights.base.mean"]["ours"] is None
    assert pub["reduced.1300.mean"]["published"] == 0.55176

    # files, written whole, and report.json the same as the dict
    for stem in ("figure2", "figure3", "figureS1", "curves"):
        for ext in ("png", "pdf"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000
    assert not list(out.glob(".*"))  # no temp files left
    data = json.loads((out / "report.json").read_text())
    for key in ("random_split.baseB.mean", "random_split.AnB+.7.points", "table1.3-7.vs_selffer_ft",
                "natman.base.manmade", "natman.transfer.natural.3", "reduced.1300"):
        cur = data
        for part in key.split("."):
            assert part in cur, key
            cur = cur[part]
    for key in ("random_weights", "missing", "published", "qualitative", "nets"):
        assert key in data
    assert set(data["nets"]["base-half0A"]) >= {"released_name", "metric", "final", "best", "iterations"}
    md = (out / "report.md").read_text()
    assert "## Missing nets" in md and "`base-all` (netbase)" in md and "figure2.png" in md
    assert "| 1-7 | +1.50%" in md


@pytest.mark.slow  # draws every figure
def test_report_runs_layout_tiny_and_nothing_at_all(tmp_path: Path) -> None:
    plan = load_plan("tiny")
    runs = tmp_path / "runs"
    for net in plan.nets[:3]:
        d = RunDir(runs / net.name, net.name, net.max_iter).logs_dir
        d.mkdir(parents=True)
        (d / "20260101-000000.log").write_text(log_2014(values_for(0.5)))
    rep = report.make_report("tiny", runs, tmp_path / "rep", draw=False)
    assert rep["counts"]["with_results"] == 3
    assert rep["top_k"] == 10  # the tiny plan sets no top_k: the paper's 10
    assert rep["missing"] == [n.name for n in plan.nets[3:]]
    assert rep["qualitative"]["bnb_dips_in_middle"]["holds"] is None

    # no logs at all: everything missing, figures still drawn with "no data"
    empty = tmp_path / "empty"
    empty.mkdir()
    rep = report.make_report("small", empty, tmp_path / "none")
    assert len(rep["missing"]) == len(load_plan("small").nets)
    assert rep["top_k"] == load_plan("small").top_k == 1   # the plan's, unless --top-k says otherwise
    assert report.make_report("small", empty, tmp_path / "k3", draw=False, k=3)["top_k"] == 3
    from transfer import figures
    assert figures._whole_classes(rep) == ("20-class base", "all 20 classes")   # not "1000" on 20 classes
    assert figures._whole_classes({"nets": {}}) == ("whole-set base", "every class")
    assert (tmp_path / "none" / "figure2.png").exists()
    assert rep["table1"]["1-7"]["vs_base"] is None


def test_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="nowhere"):
        report.make_report("tiny", tmp_path / "nowhere", tmp_path / "o")
    tmp = tmp_path / "x"
    tmp.mkdir()
    with pytest.raises(TransferError, match="layout 'weird'"):
        report.collect(load_plan("tiny"), tmp, "weird")
    parser = argparse.ArgumentParser()
    report.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--plan", "tiny", "--logs", str(tmp), "--out", str(tmp_path / "r"),
                              "--no-figures"])
    assert args.func(args) == 0
    assert (tmp_path / "r" / "report.json").exists()
