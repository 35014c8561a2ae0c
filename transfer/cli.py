"""Thin command line: each stage module registers its own subcommands.

A module in COMMANDS defines `register(subparsers)`, which adds the parser of its command, whose
`func` default receives the parsed arguments and returns an exit code (or None for 0).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys
import traceback

from .core import console, stopsig
from .core.errors import Exit, TransferError, exit_codes_text

# command -> the module that defines it (`register(subparsers)` adds its parser). Only the module of the
# command being run is imported: `transfer train` loads no SLURM, report or figure code.
COMMANDS = {
    "doctor": "caffe.doctor",          # is Caffe there, and everything the paper needs
    "splits": "data.splits_cli",       # class splits and file lists
    "plan": "plan.cli",                # plan show / simulate
    "labels": "data.labelsets",        # Huh et al.'s label sets
    "nets": "plan.netfiles",           # nets write: prototxt and solvers
    "data": "data.cli",                # data build / verify / mean / derive / relabel
    "ilsvrc": "data.ilsvrc",           # Caffe's train.txt / val.txt from ILSVRC2012 as distributed
    "prepare": "data.prepare",         # a plan's lists, LMDBs, means, net files
    "synthetic": "data.synthetic",     # the built-in synthetic dataset
    "surgery": "train.surgery",        # a net's starting weights
    "train": "train.trainer",          # one net, resumable
    "run": "train.runner",             # every net of a plan on this machine
    "status": "train.status",          # where every net stands
    "submit": "train.slurm",           # SLURM jobs
    "analyze": "analysis.analyze",     # CKA between the layers of the nets, weight movement
    "report": "results.report",        # figures and tables
    "demo": "demo",                    # the whole pipeline on the synthetic dataset
}


START = """start here (README.md walks through it):
  transfer doctor                       is Caffe there, and everything the paper needs
  transfer demo --plan small            the whole pipeline on the synthetic dataset (CPU)
  transfer plan show --plan paper       the nets a plan trains
  transfer prepare --imagenet DIR       the paper's datasets from ILSVRC2012 as distributed
  transfer run --plan paper --gpus 0    train them here (or `transfer submit` on SLURM), resumable
  transfer status --plan paper          where every net stands; `transfer report` the paper's numbers
  transfer COMMAND --help               the options of one command
"""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command`, only that command's module is imported (the others get a bare
    entry, enough for argparse to name them); without, every command's (for --help)."""
    parser = argparse.ArgumentParser(
        prog="transfer", description=__doc__.splitlines()[0], epilog=START + "\n" + exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="also log debugging detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(f"transfer.{module}").register(sub)
        else:
            sub.add_parser(name)
    return parser


def _command_word(argv: list[str]) -> str | None:
    """The command the arguments name (the first word that is not a top-level option), if known."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command_word(argv)).parse_args(argv)
    console.setup(args.verbose)
    if args.command not in stopsig.HANDLED:
        stopsig.release()
    try:
        code = args.func(args)
    except TransferError as exc:
        print(f"transfer {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. `transfer plan show | head`
        sys.stderr.close()
        return Exit.OK
    except KeyboardInterrupt:
        print(f"transfer {args.command}: interrupted", file=sys.stderr)
        return Exit.CTRL_C
    except Exception as exc:  # noqa: BLE001 (anything not a TransferError escaped a check: say so, with its code)
        return _unexpected(args.command, exc)
    return int(code or 0)


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def _unexpected(command: str, exc: Exception) -> int:
    """An exception no check turned into a TransferError: a full disk (or an I/O error) is Exit.NO_SPACE
    with the file named; anything else is a bug, Exit.INTERNAL with its traceback, so that no script
    takes it for "caffe failed" or "a check found a difference" (Exit.FAILED, Python's own 1)."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"transfer {command}: error: {where}{exc.strerror or exc}; free space and run the same "
              "command again", file=sys.stderr)
        return Exit.NO_SPACE
    traceback.print_exception(exc)
    print(f"transfer {command}: internal error (exit {int(Exit.INTERNAL)}): {type(exc).__name__}: {exc}\n"
          "  This is a bug in transfer, not a verdict on your data or nets; please report it with the "
          "traceback above.", file=sys.stderr)
    return Exit.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
