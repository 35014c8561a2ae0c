"""docs/FAITHFUL.md states the numbers the code uses: the paper plan's solver, net count, and the
published numbers; and nothing points at a description users do not have."""
from __future__ import annotations

import re
import subprocess

from transfer import REPO
from transfer.results import published
from transfer.plan.load import load_plan

FAITHFUL = (REPO / "docs" / "FAITHFUL.md").read_text()


def _row(field: str) -> str:
    m = re.search(rf"^\| {re.escape(field)} \| ([^|]+) \|", FAITHFUL, re.M)
    assert m, f"docs/FAITHFUL.md has no solver row '{field}'"
    return m.group(1).strip()


def test_solver_table_is_the_paper_plans_solver():
    s = load_plan("paper").net("base-half0A").solver
    assert _row("base_lr") == str(s.base_lr) and _row("max_iter") == str(s.max_iter)
    assert _row("lr_policy, gamma, stepsize") == f"{s.lr_policy}, {s.gamma}, {s.stepsize}"
    assert _row("momentum, weight_decay") == f"{s.momentum}, {s.weight_decay}"
    assert _row("test_interval, test_iter").startswith(f"{s.test_interval}, {s.test_iter}")
    assert _row("snapshot") == str(s.snapshot) and _row("display") == str(s.display)
    r = load_plan("paper").net("reduced-0100").solver
    assert _row("reduced schedule") == f"base_lr {r.base_lr}, stepsize {r.stepsize}, max_iter {r.max_iter}"


def test_plan_count_and_published_numbers():
    plan = load_plan("paper")
    assert f"**{len(plan.nets)}**" in FAITHFUL
    assert str(published.BASE_B_TOP1) in FAITHFUL
    for count, value in published.TABLE_S1.items():
        assert f"{count} {value:.5f}" in FAITHFUL, count
    for rng, row in published.TABLE1.items():
        assert f"+{row['vs_base']:.1%} / +{row['vs_selffer_ft']:.1%} |" in FAITHFUL, rng


def test_no_file_points_at_a_missing_description():
    missing = "FAITHFUL" + "_SPEC"  # a description that was never part of the repository
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    for name in tracked:
        path = REPO / name
        if path.suffix in (".py", ".md", ".yaml", ".txt", ".ipynb", ".mk", ".sh") or name == "Makefile":
            assert missing not in path.read_text(errors="replace"), name
