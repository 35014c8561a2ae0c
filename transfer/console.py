"""Console output of every stage: one logging set-up, made by the command line.

Stages log through `logging.getLogger("transfer.<stage>")`; lines read `[<stage> HH:MM:SS] message`
on stderr, so a command's own results (tables, JSON) stay alone on stdout.
"""
from __future__ import annotations

import logging
import sys


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stage = record.name.removeprefix("transfer.")
        return f"[{stage} {self.formatTime(record, '%H:%M:%S')}] {record.getMessage()}"


def setup(verbose: bool = False) -> None:
    """Send the stages' log lines to stderr (once per process)."""
    root = logging.getLogger("transfer")
    if not any(getattr(h, "_transfer", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Format())
        handler._transfer = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def stage(name: str) -> logging.Logger:
    """The logger of a stage, e.g. stage("train")."""
    return logging.getLogger(f"transfer.{name}")
