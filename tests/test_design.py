"""docs/DESIGN.md's claims, checked against the code: stages import only downward, no import cycle, no
project import inside a function, small modules and functions, and the generated diagram is current."""
from __future__ import annotations

import sys

import pytest

from transfer import REPO

sys.path.insert(0, str(REPO / "scripts"))
import design_graph as graph  # noqa: E402

MODULES = graph.read_modules()


def test_the_checks_can_fail():
    """Each check below finds what it looks for when it is there (a check that cannot fail proves nothing)."""
    fake = {"a.x": graph.Module("a.x", REPO, "", 10, {"a.y"}), "a.y": graph.Module("a.y", REPO, "", 10, {"a.x"})}
    assert graph.cycles(fake)
    up = {"core.x": graph.Module("core.x", REPO, "", 10, {"plan.model"}),
          "plan.model": graph.Module("plan.model", REPO, "", 10)}
    assert graph.upward(up) == ["core.x -> plan.model"]
    src = "def f():\n    from .other import g\n    return g\n" + "def h():\n" + "    x = 1\n" * 61
    tmp = REPO / "transfer" / "core" / "_probe_design.py"
    tmp.write_text(src)
    try:
        probe = graph.read_modules()["core._probe_design"]
    finally:
        tmp.unlink()
    assert probe.late == ["f: core.other"] and [f[0] for f in probe.long_functions] == ["h"]


def test_no_import_cycle():
    assert graph.cycles(MODULES) == []


def test_stages_import_only_downward():
    assert graph.upward(MODULES) == []


def test_no_project_module_imported_inside_a_function():
    # (pycaffe, matplotlib and other slow or optional libraries may be; the command line imports the
    # one module of the command it runs through its command table, transfer/cli.py)
    assert [(m.name, m.late) for m in MODULES.values() if m.late] == []


def test_small_modules_and_functions():
    assert [(m.name, m.lines) for m in MODULES.values() if m.lines > 450] == []
    # Figure code may be longer: one figure drawn panel by panel, which says so on its `def` line.
    long = [(m.name, name, n) for m in MODULES.values() for name, n, line in m.long_functions
            if not (m.name.startswith("results.") and "figure" in m.name and "# long:" in line)]
    assert long == []


def test_every_stage_folder_says_what_it_owns():
    for stage in graph.STAGES:
        init = REPO / "transfer" / stage / "__init__.py"
        if init.parent.is_dir():
            assert MODULES[stage].doc, f"{init} has no docstring"


def test_design_md_shows_the_code_as_it_is():
    text = (REPO / "docs" / "DESIGN.md").read_text()
    assert graph.BEGIN in text, "docs/DESIGN.md has lost its generated part"
    shown = text[text.index(graph.BEGIN):text.index(graph.END) + len(graph.END)]
    assert shown == graph.generated(MODULES), "run `python scripts/design_graph.py --write`"


@pytest.mark.parametrize("command, absent", [("train", ("train.slurm", "train.queue", "results.report")),
                                             ("status", ("train.slurm", "results.report"))])
def test_a_command_imports_only_what_it_runs(command, absent):
    import subprocess
    code = ("import sys; from transfer import cli; cli.build_parser(%r); "
            "print(' '.join(m for m in sys.modules if m.startswith('transfer.')))" % command)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from transfer.cli import COMMANDS
    assert f"transfer.{COMMANDS[command]}" in out   # (the probe saw the command's own module)
    for mod in absent:
        assert f"transfer.{mod}" not in out, f"`transfer {command}` imports transfer.{mod}"
