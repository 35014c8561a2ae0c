"""Caffe's own gtest suite, the parts that need no build: the exclusions name real tests with a reason,
and the report of a run counts what ran, passed and failed, and names the test a crash stopped in.
(`make caffe-gtest`, run by `make test`, builds and runs the suite itself.)"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tinyrun

from transfer import REPO

EXCLUSIONS = REPO / "tests" / "gtest" / "exclusions.txt"
REPORT = REPO / "scripts" / "gtest_report.py"


def test_every_exclusion_names_a_test_of_the_sdist_and_says_why(tmp_path):
    tree = tinyrun.sdist_tree(tmp_path)
    sources = {p.name: p.read_text(errors="replace") for p in (tree / "src/caffe/test").glob("test_*.c*")}
    lines = [ln for ln in EXCLUSIONS.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines
    for line in lines:
        m = re.match(r"^(file|test|cpu) +(\S+) +(\S.{20,})$", line)
        assert m, f"exclusions.txt: not 'file|test|cpu PATTERN REASON': {line!r}"
        kind, pattern, _ = m.groups()
        if kind == "file":
            assert pattern in sources, f"{pattern}: no such test file in the sdist"
        elif kind == "test":   # the suite named by the pattern is defined by some test file
            suite = pattern.split("/")[0].split(".")[0].rstrip("*")
            assert any(re.search(rf"\b{re.escape(suite)}\w*\b", text) for text in sources.values()), pattern


XML = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" failures="1" disabled="0" errors="0" time="1.5" name="AllTests">
  <testsuite name="BlobSimpleTest/0" tests="2" failures="0" disabled="0" errors="0" time="0.1">
    <testcase name="TestInitialization" status="run" time="0" classname="BlobSimpleTest/0" />
    <testcase name="TestReshape" status="run" time="0" classname="BlobSimpleTest/0" />
  </testsuite>
  <testsuite name="NetTest/1" tests="1" failures="1" disabled="0" errors="0" time="1.4">
    <testcase name="TestSharedWeights" status="run" time="1.4" classname="NetTest/1">
      <failure message="Value of: x" type=""/>
    </testcase>
  </testsuite>
</testsuites>
"""


def _report(tmp_path: Path, xml: str | None, log: str, rc: int) -> subprocess.CompletedProcess:
    if xml is not None:
        (tmp_path / "r.xml").write_text(xml)
    (tmp_path / "run.log").write_text(log)
    (tmp_path / "left.txt").write_text("MultiBoxLossLayerTest/0.  # TypeParam = x\n  TestLocGradient\n"
                                       "  TestConfGradient\n")
    return subprocess.run([sys.executable, str(REPORT), "--xml", str(tmp_path / "r.xml"), "--log",
                           str(tmp_path / "run.log"), "--exit", str(rc), "--seconds", "2", "--left-out",
                           str(tmp_path / "left.txt"), "--exclusions", str(EXCLUSIONS), "--build", "k",
                           "--json", str(tmp_path / "out.json")], capture_output=True, text=True, timeout=60)


def test_report_counts_and_names_the_failures(tmp_path):
    proc = _report(tmp_path, XML, "", 1)
    assert proc.returncode == 1
    assert "k: 3 tests run, 2 passed, 1 failed, 2 left out, in 2 s" in proc.stdout
    assert "FAILED: NetTest/1.TestSharedWeights" in proc.stdout
    assert '"passed": 2' in (tmp_path / "out.json").read_text()
    passing = _report(tmp_path, XML.replace('<failure message="Value of: x" type=""/>', ""), "", 0)
    assert passing.returncode == 0 and "3 passed, 0 failed" in passing.stdout


def test_report_of_a_crash_names_the_test_that_was_running(tmp_path):
    log = "[ RUN      ] BlobSimpleTest/0.TestInitialization\n[       OK ] ...\n[ RUN      ] MultiBoxLossLayerTest/0.TestLocGradient\n"
    proc = _report(tmp_path, None, log, -6)
    assert proc.returncode != 0
    assert "stopped (exit -6) during MultiBoxLossLayerTest/0.TestLocGradient; 2 tests had started" in proc.stderr
