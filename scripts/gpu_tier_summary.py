"""The one table at the end of `make test-gpu` (scripts/test-gpu.sh): every figure and check the tier
recorded (tests/gpu/summary.py), by section, with ok / FAIL / blank for a measurement.

    gpu_tier_summary.py RECORDS "STEPS THAT FAILED"
Exit 1 when a recorded check failed.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ["build", "gtest", "numeric", "deterministic", "speed"]


def table(records: list[dict]) -> list[str]:
    rows = sorted(records, key=lambda r: (ORDER.index(r["section"]) if r["section"] in ORDER else len(ORDER)))
    width = max([len(r["what"]) for r in rows] + [10])
    lines = [f"{'':2}{'what':<{width}}  {'':4}  value", f"{'':2}{'-' * width}  ----  {'-' * 30}"]
    for r in rows:
        mark = {True: "ok", False: "FAIL", None: ""}[r["ok"]]
        note = f"  [{r['note']}]" if r.get("note") else ""
        lines.append(f"  {r['what']:<{width}}  {mark:<4}  {r['value']}{note}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-2].strip())
    path, failed_steps = Path(argv[0]), argv[1].split()
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    print("\ntest-gpu: summary")
    print("\n".join(table(records)) if records else "  (nothing recorded)")
    bad = [r["what"] for r in records if r["ok"] is False]
    if failed_steps:
        print(f"test-gpu: steps that failed: {', '.join(failed_steps)}")
    print("test-gpu: " + ("FAILED" if bad or failed_steps else "all checks passed"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
