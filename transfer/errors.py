"""The exception the command line turns into a clear message, and the exit codes of every command.

Each exit code means one thing, whichever command returns it (`transfer train`, `transfer run`,
a SLURM job script): scripts and the job chain branch on them.
"""
from enum import IntEnum


class TransferError(Exception):
    """A user-facing error: the message names the file, line, net or value at fault."""


class Exit(IntEnum):
    OK = 0              # done: every selected net finished
    FAILED = 1          # the command ran and the outcome is a failure: caffe failed (see the net's FAILED
                        # record and log), a check found a difference (nets --check, data verify, doctor)
    ERROR = 2           # a TransferError: bad input, an unfinished base, frozen layers changed
    LOCKED = 73         # EX_CANTCREAT: another live process trains this net
    INTERRUPTED = 75    # EX_TEMPFAIL: stopped with a snapshot (signal or time limit); run again to resume
    CTRL_C = 130        # interrupted before anything could be saved (128 + SIGINT)
