"""The per-net metric, convergence, Table 1 and the whole report on fake log directories: only DONE nets
count, the released layout's logs count once they reach max_iter, and bad options are clear errors."""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from transfer.core.errors import Exit, TransferError
from transfer.plan.load import load_plan
from transfer.plan.model import Net, Plan
from transfer.plan.rundir import RunDir
from transfer.results import metrics, report, sections, stats, yosinski
from transfer.results.collect import collect
from transfer.results.counted import Numbers
from transfer.results.model import to_json

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
    """A 2014-format log whose validation tests give `values` in order, at step, 2 x step, ..."""
    out = []
    for i, v in enumerate(values, start=1):
        t = f"{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        out.append(f"I0416 {t}.000000 12484 solver.cpp:217] Iteration {i * step - step // 50}, lr = 0.01")
        out.append(f"I0416 {t}.000001 12484 solver.cpp:74] Iteration {i * step - step // 50}, loss = {6.0 / i:.5f}")
        out.append(f"I0416 {t}.100000 12484 solver.cpp:96] Iteration {i * step}, Testing net")
        out.append(f"I0416 {t}.200000 12484 solver.cpp:123] Test score #0: {v:.6f}")
        out.append(f"I0416 {t}.200001 12484 solver.cpp:123] Test score #1: {2.0 - v:.6f}")
    return "\n".join(out) + "\n"


def values_for(target: float, tests: int = 12) -> list[float]:
    """A curve that climbs for half the run, then a plateau whose 10 best tests (spread through it) average
    exactly `target`: the top-10 metric, and nothing still improving at the end."""
    climb = list(np.linspace(0.2, 0.97, tests // 2) * target)
    plateau = [0.99 * target] * (tests - len(climb))
    spread = np.linspace(-0.002, 0.002, 10) * min(1.0, target)
    for i, s in zip(np.linspace(0, len(plateau) - 1, 10).round().astype(int), spread):
        plateau[i] = target + s
    return climb + plateau


def write_released(root: Path, nets: list[Net], short: tuple[str, ...] = ()) -> None:
    """Released-layout folders whose logs reach each net's max_iter (a test every 1000 iterations), except
    the `short` nets' (stopped at a third)."""
    for net in nets:
        d = root / net.released_name
        d.mkdir(parents=True)
        tests = net.max_iter // 1000 // (3 if net.name in short else 1)
        with gzip.open(d / f"140415_235449_{net.released_name}.o240406.gz", "wt") as fh:
            fh.write(log_2014(values_for(pattern(net), tests)))
        (d / "imagenet_train.prototxt").write_text("name: 'CaffeNet'\n")
        (d / "imagenet_mean.binaryproto").write_bytes(b"\x00\x01")
        (d / "imagenet_val_leveldb").mkdir()


def write_run(runs: Path, net: Net, values: list[float], state: str = "done", step: int | None = None) -> RunDir:
    """A run directory with one attempt's log; DONE (and the final snapshot) for state "done", a FAILED
    record for "failed"; nothing more for "unfinished"."""
    rd = RunDir(runs / net.name, net.name, net.max_iter)
    rd.logs_dir.mkdir(parents=True)
    step = step or max(1, net.max_iter // len(values))
    (rd.logs_dir / "attempt-001.log").write_text(log_2014(values, step))
    if state == "done":
        rd.snapshots_dir.mkdir()
        rd.final_weights.write_bytes(b"weights")
        rd.write_done({"final_iter": net.max_iter})
    elif state == "failed":
        rd.write_failed({"error": "caffe exited 134 (SIGABRT): double free"})
    return rd


# ------------------------------------------------------------------------------ the per-net numbers

def test_top_k_scales_with_the_number_of_tests():
    # every released run has 200 (reduced data) to ~450 tests: k = 10, the paper's
    assert [metrics.top_k_for(t) for t in (451, 450, 200)] == [10, 10, 10]
    assert [metrics.top_k_for(t) for t in (100, 61, 21, 4, 1)] == [5, 3, 1, 1, 1]


def test_convergence_from_the_curve():
    rng = np.random.default_rng(0)
    plateau = 0.6 + 0.003 * rng.standard_normal(100)
    c = metrics.convergence(plateau, val_images=5000)
    assert c.still_improving is False and c.window == 20 and abs(c.change) < 0.004
    climbing = np.linspace(0.3, 0.6, 100) + 0.003 * rng.standard_normal(100)
    c = metrics.convergence(climbing, val_images=5000)
    assert c.still_improving is True and c.change == pytest.approx(0.06, abs=0.01)
    assert metrics.convergence(np.array([0.1, 0.2, 0.3])).still_improving is None   # too few tests to tell
    # a rise below what the validation set can resolve (binomial noise of 500 images) is not improvement
    tiny = np.linspace(0.600, 0.602, 21)
    assert metrics.convergence(tiny, val_images=500).still_improving is False
    assert metrics.convergence(tiny).still_improving is True   # without that floor it would be


# ------------------------------------------------------------------------------ Table 1 by hand

def test_table1_pairs_each_split_with_its_own_base():
    plan = load_plan("paper")   # AnB+ on splits 0 and 1, both directions; baseB: every half of splits 0-3
    vals = {"base-half0A": 0.60, "base-half0B": 0.62, "base-half1A": 0.64, "base-half1B": 0.66,
            "base-half2A": 0.50, "base-half2B": 0.50,
            "half0A-1-half0B-ft": 0.64, "half0B-1-half0A-ft": 0.62, "half1A-1-half1B-ft": 0.67,
            "half0A-4-half0A-ft": 0.61, "half1A-4-half1A-ft": 0.65}
    row = yosinski.table1(Numbers(plan, vals))["1-7"]
    # split 0: mean(0.64, 0.62) - mean(0.60, 0.62) = 0.02; split 1: 0.67 - mean(0.64, 0.66) = 0.02
    assert row.vs_base.mean == pytest.approx(0.02) and row.vs_base.n == 2 and row.vs_base.unit == "split"
    assert row.vs_base.ci95 == pytest.approx((0.02, 0.02))
    # the paper's pooling: every AnB+ net minus every baseB net (split 2 included)
    assert row.pooled_vs_base == pytest.approx(np.mean([0.64, 0.62, 0.67]) - np.mean([0.6, .62, .64, .66, .5, .5]))
    # over BnB+ (AnA+): split 0: 0.63 - 0.61, split 1: 0.67 - 0.65
    assert row.vs_selffer_ft.mean == pytest.approx(0.02)
    assert (row.count_anb_ft, row.count_base, row.count_bnb_ft) == (3, 6, 2)
    assert yosinski.table1(Numbers(plan, {}))["1-7"].vs_base is None


def test_base_b_is_every_target_half():
    assert len(yosinski.base_b_nets(load_plan("paper").nets)) == 8
    # the small plan trains one direction (AnB, BnB) of three splits: only the B halves are targets
    assert [n.name for n in yosinski.base_b_nets(load_plan("small").nets)] == [
        "base-half0B", "base-half1B", "base-half2B"]


# ------------------------------------------------------------------------------ whole report

def released_subset(plan: Plan) -> tuple[list[Net], set[str]]:
    """Split 3, the 1000-class base, random weights n>=5 and most reduced nets absent."""
    absent = {n.name for n in plan.nets
              if n.split == "3" or n.family == "whole" or (n.family == "random_weights" and n.n >= 5)
              or (n.family == "reduced" and n.name not in ("reduced-1300", "reduced-0100"))}
    return [n for n in plan.nets if n.name not in absent], absent


@pytest.mark.slow  # draws every figure
def test_report_on_released_layout_subset(tmp_path: Path) -> None:
    plan = load_plan("paper")
    present, absent = released_subset(plan)
    results = tmp_path / "results"
    short = "half2A-2-half2A"   # its logs stop at 150,000 of 450,000 iterations: not finished
    write_released(results, present, (short,))
    empty = plan.net("half0A-1-half0B")   # logs without a validation test
    for f in (results / empty.released_name).glob("*.gz"):
        f.unlink()
    (results / empty.released_name / "140415_235449_x.o1").write_text("I0416 00:00:00.0 1 a.cpp:1] hello\n")

    out = tmp_path / "out"
    rep = report.make_report("paper", results, out, "released")
    assert set(rep.missing) == absent | {empty.name, short}
    assert "no validation test" in rep.missing_reasons[empty.name]
    assert rep.nets[short].state == "unfinished" and "150000/450000" in rep.nets[short].reason
    assert rep.counts.with_results == len(present) - 2
    assert report.exit_status(rep) == Exit.INCOMPLETE   # nets are missing: say so

    rs = rep.random_split
    assert rs.base_b.mean == pytest.approx(0.625) and rs.base_b.count == 6 and rs.base_b.n == 3
    for n in range(1, 8):
        assert rs.bnb[n].mean == pytest.approx(BNB[n]) and rs.anb[n].mean == pytest.approx(ANB[n])
    # splits 0-2: selffer AnA (3 per n), transfer AnB and BnA pooled (6 per n), one split a replicate
    assert rs.bnb[4].count == 3 and rs.anb[4].count == 6 and rs.anb[4].n == 3
    assert rs.anb[1].count == 5 and rs.bnb[2].count == 2
    assert rs.anb_ft[3].count == 4 and rs.anb_ft[3].n == 2   # fine-tuned: splits 0 and 1, both directions
    e = rep.nets["base-half0B"]
    assert e.metric.k == 10 and e.metric.tests == 450 and e.metric.iterations == 450000   # released: top-10
    assert e.metric.final == pytest.approx(0.625 * 1.002) and e.metric.best == e.metric.final
    assert e.metric.metric == pytest.approx(0.625) and e.attempts == 1 and e.still_improving is False
    assert rep.nets["reduced-0100"].metric.k == 10 and rep.nets["reduced-0100"].metric.tests == 200
    t1 = rep.table1
    assert t1["1-7"].pooled_vs_base == pytest.approx(0.015) and t1["1-7"].vs_base.mean == pytest.approx(0.015)
    assert t1["5-7"].pooled_vs_selffer_ft == pytest.approx(0.013)
    assert rep.natman.base["natural"].mean == pytest.approx(0.67)
    assert rep.natman.normalized["manmade"][7].mean == pytest.approx(-0.245)
    assert rep.drops_n7.random_split.mean == pytest.approx(0.08) and rep.drops_n7.natman.mean == pytest.approx(0.245)
    assert rep.random_weights.base is None and rep.random_weights.by_n[5] is None
    assert rep.random_weights.normalized[1] is None   # no base to normalize by
    assert rep.reduced["0100"].mean == pytest.approx(0.5 * 100 / 1300, abs=1e-6)

    q = {v.key: v for v in rep.verdicts}
    assert q["anb_drops_at_high_n"].answer == q["bnb_dips_in_middle"].answer == "yes"
    assert q["anb_ft_at_or_above_base"].answer == "yes"
    # one man-made/natural run, as the paper had: its drop has no interval
    assert q["natman_drops_more"].answer == "not resolved"
    pub = rep.published
    assert pub["random_split.baseB.mean"].difference == pytest.approx(0.0)
    assert pub["table1.1-7.vs_base"].difference == pytest.approx(0.015 - 0.016)
    assert pub["random_weights.base.mean"].ours is None and pub["reduced.1300.mean"].published == 0.55176

    for stem in ("figure2", "figure3", "figureS1", "curves"):
        for ext in ("png", "pdf"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000
    assert not list(out.glob(".*"))  # no temp files left
    data = json.loads((out / "report.json").read_text())
    assert data == json.loads(json.dumps(to_json(rep)))   # report.json is the typed report's serialisation
    for key in ("random_split.baseB.mean", "random_split.AnB+.7.points", "random_split.AnB+.7.ci95",
                "table1.3-7.vs_selffer_ft.ci95", "natman.base.manmade", "natman.transfer.natural.3", "reduced.1300",
                "random_weights.1", "verdicts", "nets.base-half0A.convergence"):
        cur = data
        for part in key.split("."):
            assert part in cur, key
            cur = cur[part]
    assert data["published"]["table1.1-7.vs_base"]["ours_ci95"] == pytest.approx([0.015, 0.015], abs=1e-5)
    assert set(data["nets"]["base-half0A"]) >= {"released_name", "metric", "final", "best", "iterations", "state",
                                                "still_improving"}
    md = (out / "report.md").read_text()
    assert "## Not counted" in md and "`base-all` (netbase): absent" in md and "figure2.png" in md
    assert "| 1-7 | +1.50% [+1.50%, +1.50%] (N=2) | +1.50% | +1.60% | -0.10% |" in md
    assert md.count("*N = ") >= 5   # under every figure and table


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    report.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["report", *argv])


@pytest.mark.slow  # draws every figure
def test_only_done_nets_count(tmp_path: Path, capsys) -> None:
    plan = load_plan("tiny")
    runs = tmp_path / "runs"
    base_b, base_a, anb6 = plan.net("base-half0B"), plan.net("base-half0A"), plan.net("half0A-6-half0B")
    write_run(runs, base_a, values_for(0.7, 4))
    rd_b = write_run(runs, base_b, [0.2, 0.3], state="unfinished", step=20)   # still training: 40 of 60 iterations
    write_run(runs, anb6, values_for(0.4, 4), state="failed")
    lock = rd_b.acquire_lock()
    try:
        args = _parse("--plan", "tiny", "--logs", str(runs), "--out", str(tmp_path / "r"), "--no-figures")
        assert args.func(args) == Exit.INCOMPLETE
        err = capsys.readouterr().err
        assert "incomplete: 7 of 8 nets not DONE (1 failed, 5 not started, 1 running)" in err
        rep = json.loads((tmp_path / "r" / "report.json").read_text())
        assert rep["unfinished"][base_b.name] == "running" and rep["unfinished"][anb6.name] == "failed"
        assert rep["random_split"]["baseB"] is None   # the base at 40/60 is not baseB
        assert rep["random_split"]["AnB"]["6"] is None and not rep["complete"]
        assert "double free" in rep["missing_reasons"][anb6.name]
        md = (tmp_path / "r" / "report.md").read_text()
        assert f"`{base_b.name}` (half0B): running; at iteration 40/60" in md

        # --partial: the running net counts, said under every figure and table and in the figures; the
        # failed one never counts, and keeps the report incomplete
        args = _parse("--plan", "tiny", "--logs", str(runs), "--out", str(tmp_path / "p"), "--partial")
        assert args.func(args) == Exit.INCOMPLETE
        rep = json.loads((tmp_path / "p" / "report.json").read_text())
        assert rep["includes_unfinished"] and rep["random_split"]["baseB"]["mean"] == pytest.approx(0.3)
        assert rep["random_split"]["AnB"]["6"] is None
        md = (tmp_path / "p" / "report.md").read_text()
        assert md.count("**Includes unfinished nets (--partial)**") >= 3
        (runs / anb6.name / "FAILED").unlink()   # rerun and stopped: now it counts with --partial, exit 0
        args = _parse("--plan", "tiny", "--logs", str(runs), "--out", str(tmp_path / "p"), "--partial", "--no-figures")
        assert args.func(args) == 0
        assert json.loads((tmp_path / "p" / "report.json").read_text())["random_split"]["AnB"]["6"] is not None
    finally:
        lock.release()


def test_no_logs_at_all_nothing_counts_and_no_verdict_has_data(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rep = report.make_report("small", empty, tmp_path / "none", draw=False)
    assert len(rep.missing) == len(load_plan("small").nets) and set(rep.unfinished.values()) == {"not started"}
    assert rep.table1["1-7"].vs_base is None
    assert {v.answer for v in rep.verdicts} == {stats.NO_DATA}
    assert rep.top_k == load_plan("small").top_k == 1   # the plan's, unless --top-k says otherwise


def test_errors_name_the_path_and_the_option(tmp_path: Path, capsys) -> None:
    with pytest.raises(TransferError, match="nowhere"):
        report.make_report("tiny", tmp_path / "nowhere", tmp_path / "o")
    tmp = tmp_path / "x"
    tmp.mkdir()
    with pytest.raises(TransferError, match="layout 'weird'"):
        collect(load_plan("tiny"), tmp, "weird")
    for argv, message in ((["--top-k", "0"], "--top-k must be at least 1, not 0"),
                          (["--top-k", "x"], "--top-k takes a whole number, not 'x'"),
                          (["--resamples", "0"], "resamples nothing"), (["--resamples", "-5"], "resamples nothing"),
                          (["--seed", "3"], "Student-t interval over replicates")):
        with pytest.raises(SystemExit) as exc:
            _parse("--plan", "tiny", *argv)
        assert exc.value.code == 2 and message in capsys.readouterr().err, argv
    args = _parse("--plan", "tiny", "--logs", str(tmp), "--out", str(tmp_path / "r"), "--no-figures", "--partial")
    assert args.func(args) == 0 and (tmp_path / "r" / "report.json").exists()


def test_an_analysis_section_plugs_in(tmp_path: Path, monkeypatch) -> None:
    """An optional analysis (e.g. `transfer analyze`) registers a function that gets the report directory
    and returns its markdown lines and figure files: they land in report.md (before the list of nets) and
    in report.figures."""
    seen = []

    def similarity(out: Path) -> tuple[list[str], list[str]]:
        seen.append(out)
        (out / "similarity.png").write_bytes(b"\x89PNG")
        return ["", "## Representation similarity", "", "layer by layer"], ["similarity.png"]

    monkeypatch.setattr(sections, "_registered", [])
    assert sections.register(similarity) is similarity and sections.register(similarity) is similarity
    assert sections.registered() == (similarity,)
    empty = tmp_path / "empty"
    empty.mkdir()
    rep = report.make_report("tiny", empty, tmp_path / "o", draw=False)
    assert seen == [tmp_path / "o"] and rep.figures == ("similarity.png",)
    md = (tmp_path / "o" / "report.md").read_text()
    assert md.index("## Representation similarity") < md.index("## Not counted")
    assert "- [similarity.png](similarity.png)" in md
    assert json.loads((tmp_path / "o" / "report.json").read_text())["figures"] == ["similarity.png"]
    # given explicitly, the sections replace the registered ones
    rep = report.make_report("tiny", empty, tmp_path / "o2", draw=False, sections=())
    assert rep.figures == () and len(seen) == 1
