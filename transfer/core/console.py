"""Console output of every stage: one logging set-up, made by the command line, and the progress line.

Stages log through `logging.getLogger("transfer.<stage>")`; lines read `[<stage> HH:MM:SS] message`
on stderr, so a command's own results (tables, JSON) stay alone on stdout.
"""
from __future__ import annotations

import logging
import sys
import time

from .files import duration


class _Stderr(logging.StreamHandler):
    """A handler on whatever sys.stderr is when a line is written (tests capture it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stage = record.name.removeprefix("transfer.")
        return f"[{stage} {self.formatTime(record, '%H:%M:%S')}] {record.getMessage()}"


def setup(verbose: bool = False) -> None:
    """Send the stages' log lines to stderr (once per process)."""
    root = logging.getLogger("transfer")
    if not any(getattr(h, "_transfer", False) for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(_Format())
        handler._transfer = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def stage(name: str) -> logging.Logger:
    """The logger of a stage, e.g. stage("train")."""
    return logging.getLogger(f"transfer.{name}")


def relay(tag: str, line: str) -> None:
    """A line of a child process (which logs with its own prefix), tagged with what it works on,
    so several children stay readable."""
    print(f"  [{tag}] {line.rstrip()}", file=sys.stderr, flush=True)


class Progress:
    """done/total, images/s and time left on stderr: redrawn in place on a TTY, a line every few s otherwise."""

    def __init__(self, what: str, total: int, done: int = 0, every: float | None = None) -> None:
        self.what, self.total, self.first = what, total, done
        self.t0 = self.last = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.every = every if every is not None else (0.25 if self.tty else 5.0)
        self.done = done

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = (done - self.first) / max(now - self.t0, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        pct = 100.0 * done / max(self.total, 1)
        line = f"{self.what}: {done}/{self.total} ({pct:.1f}%), {rate:.0f} images/s, {duration(left)} left"
        sys.stderr.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        self.update(self.done, force=True)
        if self.tty:
            sys.stderr.write("\n")
