"""The GPU tier's figures for the one table `make test-gpu` prints at its end (scripts/gpu_tier_summary.py).

Each test appends JSON lines to the file named by TRANSFER_GPU_TIER_SUMMARY (nothing when unset): what
was checked or measured, the value, and whether the check held.
"""
from __future__ import annotations

import json
import os

ENV = "TRANSFER_GPU_TIER_SUMMARY"


def record(section: str, what: str, value: str, ok: bool | None = None, note: str = "") -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    line = {"section": section, "what": what, "value": value, "ok": ok, "note": note}
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
