"""The exceptions the command line turns into a clear message, and the exit codes of every command.

Each exit code means one thing, whichever command returns it (`transfer train`, `transfer run`,
a SLURM job script): scripts and the job chain branch on them. `transfer --help` and the README list them.
"""
from __future__ import annotations

import errno
from enum import IntEnum


class Exit(IntEnum):
    OK = 0              # done: every selected net finished (or nothing left to do)
    FAILED = 1          # the command ran and the outcome is a failure: caffe failed (see the net's FAILED
                        # record and log), a check found a difference (nets --check, data verify, doctor)
    ERROR = 2           # bad input or usage: the message names the file, line, key or value to fix
    INCOMPLETE = 3      # a report on nets not all finished: some are still training, stopped, failed or
                        # never started (listed); rerun once they are DONE, or ask for `--partial` results
    INTERNAL = 70       # EX_SOFTWARE: a bug in transfer (an unexpected exception), never a verdict on the work
    LOCKED = 73         # EX_CANTCREAT: another live process trains this net or writes this database
    NO_SPACE = 74       # EX_IOERR: the disk is full (or another write error); free space and rerun
    INTERRUPTED = 75    # EX_TEMPFAIL: `train`/`run` stopped with a snapshot (Ctrl-C, SIGTERM, time limit)
    CTRL_C = 130        # 128 + SIGINT: any other command stopped by Ctrl-C (or train/run before training began)


EXIT_MEANINGS = {
    Exit.OK: "done (or nothing left to do)",
    Exit.FAILED: "the work ran and failed (caffe failed, or a check found problems)",
    Exit.ERROR: "bad input or usage; the message names the file, line, key or value",
    Exit.INCOMPLETE: "report incomplete: some nets are not DONE (listed); rerun later or pass --partial",
    Exit.INTERNAL: "internal error: a bug in transfer (traceback shown), not a result; please report it",
    Exit.LOCKED: "another process holds the lock (trains this net, writes this database)",
    Exit.NO_SPACE: "disk full or write error; free space and rerun, work done is kept",
    Exit.INTERRUPTED: "train/run stopped with a snapshot (Ctrl-C, SIGTERM, --max-seconds); rerun to continue",
    Exit.CTRL_C: "interrupted by Ctrl-C (other commands; train/run before training began); rerun to continue",
}


class TransferError(Exception):
    """A user-facing error: the message names the file, line, net or value at fault."""

    exit_code = Exit.ERROR


class LockedError(TransferError):
    """Another live process holds what this one needs."""

    exit_code = Exit.LOCKED


class NoSpaceError(TransferError):
    """A write failed for want of space (or quota, or another I/O error): the message says where."""

    exit_code = Exit.NO_SPACE


def exit_codes_text() -> str:
    """The table for `transfer --help` and the README."""
    return "exit status:\n" + "\n".join(f"  {int(code):>3}  {what}" for code, what in EXIT_MEANINGS.items())


_SPACE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                 errno.EFBIG: "file too large for the file system", errno.EIO: "input/output error"}


def space_error(exc: BaseException, hint: str, where: object = None) -> NoSpaceError | None:
    """A NoSpaceError for an OSError of a full disk, a quota or an I/O error: the file named (the
    error's own, else `where`: a write on an open file names none), then `hint`, what was kept and
    what to do. None for any other exception."""
    if not isinstance(exc, OSError) or exc.errno not in _SPACE_ERRNOS:
        return None
    name = exc.filename or where
    return NoSpaceError(f"{f'{name}: ' if name else ''}{_SPACE_ERRNOS[exc.errno]}; {hint}")
