"""The command line a newcomer meets: help on every option, where to start, the exit statuses."""
from __future__ import annotations

import re


def test_every_option_has_help_and_help_says_where_to_start():
    import argparse

    from transfer.cli import build_parser
    from transfer.core.errors import Exit

    parser = build_parser()
    missing = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    walk(sub, f"{path} {name}")
            elif not a.help:   # (SUPPRESS: internal options job scripts pass, hidden on purpose)
                missing.append(f"{path} {'/'.join(a.option_strings) or a.dest}")

    walk(parser, "transfer")
    assert not missing, missing
    text = parser.format_help()
    assert "start here" in text and "transfer doctor" in text and "transfer demo --plan small" in text
    for code in Exit:   # each exit status listed once, with its meaning
        assert len(re.findall(rf"^\s+{int(code)}  \S", text, re.M)) == 1, code


def test_an_internal_error_has_its_own_exit_code(tmp_path, capsys, monkeypatch):
    """An exception no check turned into a message is a bug: exit 70 with its traceback, never 1 (which
    says "caffe failed" or "a check found a difference") and never a bare Python traceback."""
    import errno

    from transfer import cli
    from transfer.core.errors import Exit
    from transfer.data import cli as data_cli

    def bug(*_a, **_k):
        return {}["no such key"]

    monkeypatch.setattr(data_cli, "build", bug)
    args = ["data", "build", "--list", str(tmp_path / "l.txt"), "--root", str(tmp_path), "--out", str(tmp_path / "db")]
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == Exit.INTERNAL == 70
    assert "Traceback" in err and "transfer data: internal error (exit 70): KeyError: 'no such key'" in err
    assert "a bug in transfer" in err

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "db" / "x"))

    monkeypatch.setattr(data_cli, "build", full)
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == Exit.NO_SPACE and f"{tmp_path / 'db' / 'x'}: No space left on device" in err
    assert "Traceback" not in err
    help_text = cli.build_parser().format_help()
    assert re.search(r"^\s+70  internal error: a bug in transfer", help_text, re.M)


# Numeric options still typed int/float: each is checked by its command with a message naming it
# (`transfer splits make --num-classes 0`: "cannot halve 0 classes", ...). Any other is an argtypes type.
CHECKED_IN_THE_COMMAND = {
    "splits make --num-classes", "plan simulate --gpus", "synthetic make --classes",
    "synthetic make --train-per-class", "synthetic make --val-per-class", "synthetic make --size",
    "synthetic make --quality", "submit --gpus-per-job", "submit --cluster-gpus", "submit --signal-lead"}


def _numeric_options():
    import argparse

    from transfer.cli import build_parser

    out = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    walk(sub, f"{path} {name}".strip())
            elif a.option_strings and a.type is not None and getattr(a.type, "__module__", "") in (
                    "builtins", "transfer.core.argtypes"):
                out.append((path, a.option_strings[-1], a.type))

    walk(build_parser(), "")
    return out


def test_numeric_options_refuse_values_out_of_range_naming_them(capsys):
    """`--commit-every 0`, `--seed -1`, `--resamples 0`, `--max-seconds nan`...: exit 2 from argparse,
    the option and the value named, before any command runs (so nothing is written)."""
    import pytest

    from transfer.cli import build_parser

    options = _numeric_options()
    bare = {f"{cmd} {opt}" for cmd, opt, typ in options if typ in (int, float)}
    assert bare == CHECKED_IN_THE_COMMAND
    checked = [(cmd, opt) for cmd, opt, typ in options if typ not in (int, float)]
    assert ("data build", "--commit-every") in checked
    assert len(checked) >= 20
    parser = build_parser()
    for cmd, opt in checked:
        for bad in ("-1", "nan", "x"):
            with pytest.raises(SystemExit) as stop:
                parser.parse_args([*cmd.split(), opt, bad])
            err = capsys.readouterr().err
            assert stop.value.code == 2 and f"argument {opt}: " in err, (cmd, opt, bad, err)
            assert "Traceback" not in err
