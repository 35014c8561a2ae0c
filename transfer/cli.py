"""Thin command line: each stage module registers its own subcommands.

A module in COMMAND_MODULES defines `register(subparsers)`, which adds parsers whose
`func` default receives the parsed arguments and returns an exit code (or None for 0).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import console, stopsig
from .errors import Exit, TransferError, exit_codes_text

COMMAND_MODULES = [
    "doctor",      # transfer doctor
    "splits",      # transfer splits ...
    "plan_cli",    # transfer plan show / simulate
    "labelsets",   # transfer labels list / show
    "nets",        # transfer nets write
    "datasets",    # transfer data build / verify / mean / derive
    "ilsvrc",      # transfer ilsvrc lists: Caffe's train.txt / val.txt from ILSVRC2012 as distributed
    "prepare",     # transfer prepare --plan P: lists, LMDBs, means, net files
    "synthetic",   # transfer synthetic make
    "surgery",     # transfer surgery NET
    "train",       # transfer train NET
    "runner",      # transfer run
    "status",      # transfer status
    "slurm",       # transfer submit
    "analysis.analyze",  # transfer analyze: CKA between layers of the nets, weight movement
    "report",      # transfer report
    "demo",        # transfer demo: the whole pipeline on the synthetic dataset
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
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
