"""Read one run of Caffe's gtest suite (scripts/caffe-gtest.sh): how many tests ran, passed and failed,
the failures, and what the exclusions left out. Exit 1 on any failure, a crash, or an empty run.

    gtest_report.py --xml REPORT --log RUN_LOG --exit RC --seconds S --left-out LISTING
                    --exclusions tests/gtest/exclusions.txt --build NAME [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def listed(path: Path) -> list[str]:
    """Test names of a `--gtest_list_tests` listing (suite lines end with '.', cases are indented)."""
    names, suite = [], ""
    for line in path.read_text(errors="replace").splitlines():
        if line and not line.startswith(" "):
            suite = line.split("#")[0].strip()
        elif line.strip():
            names.append(suite + line.strip().split("#")[0].strip())
    return names


def exclusions(path: Path) -> list[tuple[str, str, str]]:
    """(kind, pattern, reason) of each `file`, `test` or `cpu` line."""
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"^(file|test|cpu)\s+(\S+)\s+(.*)$", line)
        if m:
            out.append((m.group(1), m.group(2), m.group(3).strip()))
    return out


def read_report(xml: Path) -> tuple[int, list[str]]:
    """(tests run, names of the failed ones) from gtest's XML report."""
    root = ET.parse(xml).getroot()
    failed = [f"{case.get('classname')}.{case.get('name')}" for case in root.iter("testcase")
              if case.find("failure") is not None]
    run = sum(1 for case in root.iter("testcase") if case.get("status", "run") == "run")
    return run, failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("xml", "log", "left-out", "exclusions"):
        ap.add_argument(f"--{name}", type=Path, required=True)
    ap.add_argument("--exit", type=int, required=True)
    ap.add_argument("--seconds", type=int, required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--kinds", default="file,test", help="the kinds of exclusion this run applied")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    log = a.log.read_text(errors="replace")
    if not a.xml.is_file():   # the process died before gtest wrote its report
        started = re.findall(r"^\[ RUN      \] (\S+)", log, re.M)
        print("\n".join(log.splitlines()[-15:]))
        sys.exit(f"caffe-gtest: error: the suite stopped (exit {a.exit}) during "
                 f"{started[-1] if started else 'start-up'}; {len(started)} tests had started")
    run, failed = read_report(a.xml)
    left = listed(a.left_out)
    passed = run - len(failed)
    print(f"caffe-gtest: {a.build}: {run} tests run, {passed} passed, {len(failed)} failed, "
          f"{len(left)} left out, in {a.seconds} s")
    for kind, pattern, reason in exclusions(a.exclusions):
        if kind not in a.kinds.split(","):
            continue
        hit = [n for n in left if re.fullmatch(pattern.replace(".", r"\.").replace("*", ".*"), n)]
        count = "not compiled" if kind == "file" else f"{len(hit)} tests"
        print(f"  left out: {pattern} ({count}): {reason}")
    for name in failed:
        print(f"  FAILED: {name}")
    if a.json:
        a.json.write_text(json.dumps({"build": a.build, "run": run, "passed": passed, "failed": failed,
                                      "left_out": len(left), "seconds": a.seconds}) + "\n")
    if failed or run == 0 or a.exit not in (0, 1):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
