"""The exception types the CLI turns into a clear message, and the exit status of each.

Every `transfer` command exits with one of these, each with one meaning (`transfer --help` lists them):
"""
from __future__ import annotations

EXIT_OK = 0            # done (or nothing left to do)
EXIT_FAILED = 1        # the work ran and did not succeed: caffe failed, a check found problems (listed)
EXIT_ERROR = 2         # bad input or usage: the message names the file, line, key or value to fix
EXIT_LOCKED = 73       # another live process holds the lock (trains this net, writes this database)
EXIT_NO_SPACE = 74     # the disk is full (or another write error): free space and rerun; done work is kept
EXIT_STOPPED = 75      # stopped on request with a snapshot (SIGTERM, --max-seconds): rerun to continue
EXIT_INTERRUPTED = 130  # Ctrl-C outside training

EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_FAILED: "the work ran and failed (caffe failed, or a check found problems)",
    EXIT_ERROR: "bad input or usage; the message names the file, line or value",
    EXIT_LOCKED: "another process holds the lock (trains this net, writes this database)",
    EXIT_NO_SPACE: "disk full or write error; free space and rerun, work done is kept",
    EXIT_STOPPED: "stopped with a snapshot (SIGTERM, --max-seconds); rerun to continue",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class TransferError(Exception):
    """A user-facing error: the message names the file, line, net or value at fault."""

    exit_code = EXIT_ERROR


class LockedError(TransferError):
    """Another live process holds what this one needs."""

    exit_code = EXIT_LOCKED


class NoSpaceError(TransferError):
    """A write failed for want of space (or quota, or another I/O error): the message says where."""

    exit_code = EXIT_NO_SPACE


def exit_codes_text() -> str:
    """The table for `transfer --help` and the README."""
    return "exit status:\n" + "\n".join(f"  {code:>3}  {what}" for code, what in EXIT_CODES.items())
