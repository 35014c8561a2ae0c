"""`transfer demo` end to end on the tiny plan: images -> splits -> LMDBs -> nets -> caffe -> report.

The same path as `make demo` (plan small), at the size of the tests' plan."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import tinyrun  # noqa: E402

pytestmark = pytest.mark.requires_caffe


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    data = tinyrun.shared_data(tmp_path_factory)
    plan = tinyrun.write_plan_copy(tmp_path_factory.mktemp("demo"), data, write_nets=False)
    out = plan.path.parent / "report"
    first = tinyrun.run_cli("demo", "--plan", str(plan.path), "--jobs", "2", "--out", str(out), timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return plan, out, first


def log_accuracies(run) -> list[float]:
    """Validation accuracies read straight from caffe's log lines, independently of transfer.caffe.logs."""
    text = "".join(p.read_text() for p in run.log_files())
    return [float(x) for x in re.findall(r"Test net output #0: accuracy = ([\d.e+-]+)", text)]


def test_every_net_trained_to_max_iter(demo_run):
    plan, _, _ = demo_run
    for net in plan.nets:
        done = net.run.done_record()
        assert net.run.final_weights.is_file(), net.name
        first_log = net.run.log_files()[0]
        assert first_log == net.run.attempt_log(1)
        assert max(int(m) for m in re.findall(r"Iteration (\d+)", first_log.read_text())) == net.max_iter, net.name
        assert done["final_iter"] == net.max_iter, net.name
        if net.frozen:
            assert done["frozen_check"]["identical"] is True, net.name
            assert len(done["frozen_check"]["layers"]) == net.frozen, net.name


def test_report_numbers_are_read_back_from_the_logs(demo_run):
    plan, out, first = demo_run
    report = json.loads((out / "report.json").read_text())
    assert report["missing"] == [] and report["complete"]
    for net in plan.nets:
        accs = log_accuracies(net.run)
        entry = report["nets"][net.name]
        assert entry["iterations"] == net.max_iter and entry["state"] == "done"
        assert entry["final"] == pytest.approx(accs[-1])
        k = max(1, min(10, round(len(accs) / 20)))   # the top-k scaled to the tests (4 here: k = 1)
        assert entry["k"] == k and entry["metric"] == pytest.approx(np.mean(sorted(accs)[-k:]))
        assert entry["still_improving"] in (True, False)
    base_b = report["random_split"]["baseB"]["mean"]
    assert base_b == pytest.approx(report["nets"]["base-half0B"]["metric"])
    for name in ("figure2.png", "figure3.png", "report.md"):
        assert (out / name).stat().st_size > 0
        assert str(out / name) in first.stdout  # the demo ends by saying where they are
    assert "paper's pattern" in first.stdout
    # the analysis ran before the report, and the report carries its section and figures
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["plan"] == plan.name and analysis["pairs"]
    assert "## Inside the nets" in (out / "report.md").read_text() and (out / "cka_vs_n.png").is_file()


def test_second_demo_reuses_everything(demo_run):
    plan, out, _ = demo_run
    before = {n.name: n.run.log_files() for n in plan.nets}
    again = tinyrun.run_cli("demo", "--plan", str(plan.path), "--jobs", "2", "--out", str(out), timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    after = {n.name: n.run.log_files() for n in plan.nets}
    assert after == before, "a second demo must not train again"
    assert "up to date" in again.stderr
