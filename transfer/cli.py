"""Thin command line: each stage module registers its own subcommands.

A module in COMMAND_MODULES defines `register(subparsers)`, which adds parsers whose
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

COMMAND_MODULES = [
    "caffe.doctor",      # transfer doctor
    "data.splits",       # transfer splits ...
    "plan.cli",          # transfer plan show / simulate
    "data.labelsets",    # transfer labels list / show
    "plan.netfiles",     # transfer nets write
    "data.cli",          # transfer data build / derive / relabel / verify / mean
    "data.ilsvrc",       # transfer ilsvrc lists: Caffe's train.txt / val.txt from ILSVRC2012 as distributed
    "data.prepare",      # transfer prepare --plan P: lists, LMDBs, means, net files
    "data.synthetic",    # transfer synthetic make
    "train.surgery",     # transfer surgery NET
    "train.trainer",     # transfer train NET
    "train.runner",      # transfer run
    "train.status",      # transfer status
    "train.slurm",       # transfer submit
    "results.report",    # transfer report
    "demo",              # transfer demo: the whole pipeline on the synthetic dataset
]


START = """start here (README.md walks through it):
  transfer doctor                       is Caffe there, and everything the paper needs
  transfer demo --plan small            the whole pipeline on the synthetic dataset (CPU)
  transfer plan show --plan paper       the nets a plan trains
  transfer prepare --imagenet DIR       the paper's datasets from ILSVRC2012 as distributed
  transfer run --plan paper --gpus 0    train them here (or `transfer submit` on SLURM), resumable
  transfer status --plan paper          where every net stands; `transfer report` the paper's numbers
  transfer COMMAND --help               the options of one command
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transfer", description=__doc__.splitlines()[0], epilog=START + "\n" + exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="also log debugging detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"transfer.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
