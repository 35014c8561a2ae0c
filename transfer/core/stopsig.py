"""Stop signals that arrive while a command is still starting.

A batch system may send SIGTERM (SLURM: up to a minute before the time limit) while `transfer
train` is still importing and checking its data. `python -m transfer` records it from its first
line; the commands that stop cleanly (train, run) act on it once their own handling is in place,
the others get the default action back, and with it the signal.
"""
from __future__ import annotations

import os
import signal
from typing import Any

HANDLED = ("train", "run")  # commands that stop with a snapshot
_received: list[str] = []


def _record(signum: int, _frame: Any) -> None:
    _received.append(signal.Signals(signum).name)


def catch_early() -> None:
    signal.signal(signal.SIGTERM, _record)


def received() -> str | None:
    """The first stop signal received before the command's own handling, if any."""
    return _received[0] if _received else None


def release() -> None:
    """The default action back (termination), applied now to a signal already received."""
    if signal.getsignal(signal.SIGTERM) is _record:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if _received:
            os.kill(os.getpid(), signal.SIGTERM)
