"""Read Caffe training logs of any age: the 2014 fork the paper used and Caffe 1.0. Also the first
error line of a caffe that failed, and the first loss that is not finite, found as caffe writes.

A run may have several log files (one per training attempt, restarts resume from a snapshot
and repeat iterations). Every value is stored with the time of its line; for a repeated
iteration the line with the latest timestamp wins, as the released notebook did.

Understood lines (glog prefix `I0416 00:31:12.458560 12484 solver.cpp:217] ` with or without
the year, `I20261121 ...`):
  2014:      `Iteration 20, lr = 0.01`  `Iteration 20, loss = 6.63913`
             `Iteration 1000, Testing net`  `Test score #0: 0.632` (top-1)  `Test score #1: 1.65` (loss)
  Caffe 1.0: `Iteration 1000, Testing net (#0)`  `Test net output #0: accuracy = 0.632`
             `Test net output #1: loss = 1.6 (* 1 = 1.6 loss)`
             `Iteration 1000 (2.1 iter/s, 9.5s/20 iters), loss = 6.6`  `Train net output #0: loss = 6.6`
"""
from __future__ import annotations

import gzip
import math
import re
import signal
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..core.errors import TransferError

_PREFIX = re.compile(
    r"^[IWEF](\d{4})?(\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{1,6})\s+\d+\s+[^\]\s]*\]\s?(.*)$")
_NUM = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|infinity))"
_ITER_LR = re.compile(r"Iteration (\d+), lr = " + _NUM, re.I)
_ITER_LOSS = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = " + _NUM, re.I)
_TESTING = re.compile(r"Iteration (\d+), Testing net(?: \(#(\d+)\))?")
_ITERATION = re.compile(r"Iteration (\d+)\b")
_SCORE_2014 = re.compile(r"Test score #(\d+): " + _NUM, re.I)
_TEST_OUTPUT = re.compile(r"Test net output #(\d+): (\S+) = " + _NUM, re.I)
_TRAIN_OUTPUT = re.compile(r"Train net output #(\d+): (\S+) = " + _NUM, re.I)
# Dates in file names: the released `140415_235449_name.o240406.gz` (yymmdd_hhmmss) and
# glog's own `caffe.host.user.log.INFO.20261121-204713.9078` (yyyymmdd-hhmmss).
_NAME_DATE_2014 = re.compile(r"(?<!\d)(\d{2})(\d{2})(\d{2})_\d{6}(?!\d)")
_NAME_DATE_GLOG = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})-\d{6}(?!\d)")
_PLACEHOLDER_YEAR = 2000  # leap year, so Feb 29 lines of a yearless log still parse
_LOG_NAME = re.compile(r"(\.log|\.gz|\.[oe]\d+|\.oMANUAL|\.INFO\.\d{8}-\d{6}\.\d+)$")


@dataclass
class NetLog:
    """What the logs of one net say. Dicts map iteration -> value, in increasing iteration."""

    files: list[str] = field(default_factory=list)
    train_loss: dict[int, float] = field(default_factory=dict)
    lr: dict[int, float] = field(default_factory=dict)
    val_accuracy: dict[int, float] = field(default_factory=dict)
    val_loss: dict[int, float] = field(default_factory=dict)
    times: dict[int, datetime] = field(default_factory=dict)   # glog time of each `Iteration N` line
    warnings: list[str] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        """Training attempts: one log file each."""
        return len(self.files)

    @property
    def last_iteration(self) -> int | None:
        iters = [max(d) for d in (self.train_loss, self.lr, self.val_accuracy, self.val_loss) if d]
        return max(iters) if iters else None

    def speed(self) -> float | None:
        """Iterations per second between the first and the last timed `Iteration` line."""
        if len(self.times) < 2:
            return None
        (i0, t0), (i1, t1) = next(iter(self.times.items())), list(self.times.items())[-1]
        seconds = (t1 - t0).total_seconds()
        return (i1 - i0) / seconds if seconds > 0 and i1 > i0 else None

    def series(self, what: str) -> tuple[np.ndarray, np.ndarray]:
        """(iterations, values) as arrays for 'train_loss', 'lr', 'val_accuracy' or 'val_loss'."""
        d: dict[int, float] = getattr(self, what)
        its = np.array(sorted(d), dtype=np.int64)
        return its, np.array([d[i] for i in its], dtype=float)


def is_log_file(path: Path) -> bool:
    """Log files of a run: `*.log`, `*.gz`, `*.o<digits>` (SGE/PBS job output), glog's INFO files.

    Released result folders also hold prototxt, .binaryproto and leveldb directories: skipped.
    """
    return path.is_file() and bool(_LOG_NAME.search(path.name))


def log_files(directory: Path) -> list[Path]:
    """The log files directly in `directory`, in attempt order (natural sort of the names)."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if is_log_file(p)), key=_natural_key)


def _natural_key(path: Path) -> list:
    # `.o99999` before `.o100000`: compare digit runs as numbers.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _name_date(name: str) -> tuple[int, int] | None:
    """(year, month) a file name says its log starts in, if it says."""
    m = _NAME_DATE_GLOG.search(name)
    if m and 1 <= int(m.group(2)) <= 12:
        return int(m.group(1)), int(m.group(2))
    m = _NAME_DATE_2014.search(name)
    if m and 1 <= int(m.group(2)) <= 12 and 1 <= int(m.group(3)) <= 31:
        return 2000 + int(m.group(1)), int(m.group(2))
    return None


def _lines(path: Path, warnings: list[str]) -> Iterator[str]:
    """Text lines of a plain or gzipped file (detected by content); a truncated gzip
    (a job killed while writing) yields what could be read."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as fh:
            for raw in fh:
                yield raw.decode("utf-8", errors="replace").rstrip("\r\n")
    except (EOFError, zlib.error, OSError) as exc:
        warnings.append(f"{path}: read stopped early ({exc.__class__.__name__}: {exc})")


class _Clock:
    """Turns glog prefixes into datetimes; infers the year of yearless (2014) prefixes from the
    file name's date, else carries it over from the previous file, and rolls over at new year."""

    def __init__(self) -> None:
        self.year = _PLACEHOLDER_YEAR
        self.month = 1

    def start_file(self, name: str) -> None:
        dated = _name_date(name)
        if dated:
            self.year, self.month = dated

    def stamp(self, year: str | None, mo: str, d: str, h: str, mi: str, s: str, frac: str) -> datetime | None:
        month = int(mo)
        if year:
            self.year, self.month = int(year), month
        else:
            if month < self.month:  # December -> January
                self.year += 1
            self.month = month
        try:
            return datetime(self.year, month, int(d), int(h), int(mi), int(s), int(frac.ljust(6, "0")))
        except ValueError:
            return None


_Stamp = tuple  # (datetime or datetime.min, file index, line index): later wins
_WHAT = {"val_accuracy": "validation accuracy", "val_loss": "validation loss"}


def _put(store: dict[int, tuple[_Stamp, float]], it: int, value: float, stamp: _Stamp) -> None:
    old = store.get(it)
    if old is None or stamp >= old[0]:
        store[it] = (stamp, value)


def _is_accuracy(name: str) -> bool:
    low = name.lower()
    if low in ("accuracy", "acc", "top-1", "top1", "accuracy_top1", "accuracy@1", "acc@1"):
        return True
    # e.g. `accuracy_1`; never a top-5 output
    return low.startswith("acc") and "5" not in low


class LogError(TransferError):
    """A log whose numbers cannot be results: the message names the file and line."""


def _checked(path: Path, lineno: int, what: str, value: float, strict: bool) -> float:
    """A value as logged; when strict, a non-finite value, or an accuracy outside [0, 1], is a LogError."""
    if not strict:
        return value
    if not np.isfinite(value):
        raise LogError(f"{path}:{lineno}: {what} is {value}, not a finite number (the training diverged, or "
                       "the log is damaged); its net has no valid result")
    if what == "validation accuracy" and not 0.0 <= value <= 1.0:
        raise LogError(f"{path}:{lineno}: {what} {value} is outside [0, 1] (not an accuracy: another test "
                       "output in its place, or a damaged log)")
    return value


class _Reader:
    """The state of reading one run's logs: values by iteration, and where in the log we are."""

    def __init__(self, strict: bool) -> None:
        self.stores: dict[str, dict[int, tuple[_Stamp, float]]] = {
            "train_loss": {}, "lr": {}, "val_accuracy": {}, "val_loss": {}}
        self.train_output_loss: dict[int, tuple[_Stamp, float]] = {}
        self.times: dict[int, datetime] = {}
        self.testing: int | None = None   # iteration of the test pass whose outputs follow
        self.current: int | None = None   # iteration of the latest `Iteration N` line
        self.strict = strict
        self.path = Path()                # the file being read, and its 1-based line number
        self.lineno = 0

    def value(self, what: str, text: str) -> float:
        return _checked(self.path, self.lineno, what, float(text), self.strict)

    def test_value(self, key: str | None, value: str, stamp: _Stamp) -> None:
        if key and self.testing is not None:
            _put(self.stores[key], self.testing, self.value(_WHAT[key], value), stamp)

    def line(self, msg: str, when: datetime | None, stamp: _Stamp) -> None:
        if when is not None and (mi := _ITERATION.search(msg)):
            self.times[int(mi.group(1))] = when
        if mt := _TESTING.search(msg):
            self.current = int(mt.group(1))
            # only test net #0 is the validation set; extra test nets are ignored
            self.testing = self.current if (mt.group(2) in (None, "0")) else None
        elif ms := _SCORE_2014.search(msg):
            self.test_value({0: "val_accuracy", 1: "val_loss"}.get(int(ms.group(1))), ms.group(2), stamp)
        elif mo := _TEST_OUTPUT.search(msg):
            name = mo.group(2)
            key = "val_loss" if "loss" in name.lower() else ("val_accuracy" if _is_accuracy(name) else None)
            self.test_value(key, mo.group(3), stamp)
        elif mo := _TRAIN_OUTPUT.search(msg):
            if self.current is not None and "loss" in mo.group(2).lower():
                _put(self.train_output_loss, self.current, self.value("training loss", mo.group(3)), stamp)
        elif ml := _ITER_LR.search(msg):
            self.current, self.testing = int(ml.group(1)), None
            _put(self.stores["lr"], self.current, self.value("learning rate", ml.group(2)), stamp)
        elif ml := _ITER_LOSS.search(msg):
            self.current, self.testing = int(ml.group(1)), None
            _put(self.stores["train_loss"], self.current, self.value("training loss", ml.group(2)), stamp)
        elif ml := _ITERATION.search(msg):
            self.current, self.testing = int(ml.group(1)), None

    def into(self, out: NetLog) -> NetLog:
        # `Train net output` loss only where the `Iteration N, loss` line is absent
        for it, v in self.train_output_loss.items():
            self.stores["train_loss"].setdefault(it, v)
        for key, store in self.stores.items():
            setattr(out, key, {it: store[it][1] for it in sorted(store)})
        out.times = dict(sorted(self.times.items()))
        return out


def read_logs(paths: Iterable[Path | str], strict: bool = True) -> NetLog:
    """Read the log files of one run (in attempt order) into a NetLog.

    strict (the report's reading): a non-finite loss, rate or accuracy, or an accuracy outside [0, 1],
    raises a LogError naming the file and line instead of becoming a number."""
    paths = [Path(p) for p in paths]
    out = NetLog(files=[str(p) for p in paths])
    reader = _Reader(strict)
    clock = _Clock()
    for fi, path in enumerate(paths):
        if not path.is_file():
            raise TransferError(f"{path}: no such log file")
        clock.start_file(path.name)
        reader.testing = reader.current = None
        for li, line in enumerate(_lines(path, out.warnings)):
            when, msg = glog_line(line, clock)
            reader.path, reader.lineno = path, li + 1
            if "Iteration" in msg or "Test " in msg or "Train net output" in msg:
                reader.line(msg, when, (when or datetime.min, fi, li))
    return reader.into(out)


def glog_line(line: str, clock: _Clock | None = None) -> tuple[datetime | None, str]:
    """(time, message) of a glog line; (None, the line) for a line without glog's prefix (a
    wrapper script's output), where the order alone decides."""
    m = _PREFIX.match(line)
    if not m:
        return None, line.strip()
    return (clock or _Clock()).stamp(*m.groups()[:7]), m.group(8)


def read_run(directory: Path | str) -> NetLog | None:
    """The logs directly in a directory, or None if it holds none."""
    files = log_files(Path(directory))
    return read_logs(files) if files else None


# ------------------------------------------------------------------------------ when Caffe fails

# What a failed caffe run leaves in its log, cause first: glog's FATAL and ERROR lines (a failed CHECK
# is a FATAL line, "Check failed: ..."), protobuf's parse errors, and the C library's own messages
# (heap corruption, a signal). What follows a FATAL line is its stack ("*** Check failure stack
# trace: ***", "    @ 0x... google::LogMessage::Fail()"), never the cause.
_GLOG_ERROR = re.compile(r"^([EF])(\d{4})?\d{4} \d{2}:\d{2}:\d{2}\.\d{1,6}\s+\d+\s+([^\]\s]*)\]\s?(.*)$")
_OTHER_ERROR = re.compile(
    r"(Check failed|\[libprotobuf (?:ERROR|FATAL)|^\*\*\* Error in|double free or corruption|"
    r"free\(\): invalid|malloc\(\): |corrupted size vs|munmap_chunk\(\)|"
    r"^\*\*\* (?:SIGSEGV|SIGBUS|SIGFPE|SIGILL|SIGABRT|Aborted at)|Segmentation fault|Bus error|"
    r"^terminate called|what\(\):|Killed$|Aborted(?: \(core dumped\))?$)")


@dataclass(frozen=True)
class ErrorLine:
    """The first line of a log that says why caffe failed."""

    path: str
    line: int        # 1-based line number in the log
    text: str        # the message, without glog's prefix
    where: str = ""  # glog's source location (e.g. db_lmdb.cpp:15), when the line has one

    def __str__(self) -> str:
        at = f" [{self.where}]" if self.where else ""
        return f"{self.path}:{self.line}: {self.text}{at}"


def first_error(log: Path | str, lines: Iterable[str] | None = None) -> ErrorLine | None:
    """The first error line of a caffe log (glog F/E lines, 'Check failed', protobuf and C library
    errors), not the stack frames after it; None when the log shows none (e.g. killed by the OS
    without a word: the exit status tells that). `lines`: the log's text lines when already read."""
    log = Path(log)
    if lines is None:
        warnings: list[str] = []
        lines = _lines(log, warnings) if log.is_file() else []
    for n, line in enumerate(lines, 1):
        m = _GLOG_ERROR.match(line)
        if m:
            return ErrorLine(str(log), n, m.group(4).strip(), m.group(3))
        if _OTHER_ERROR.search(line.strip()):
            return ErrorLine(str(log), n, line.strip())
    return None


# Caffe's Solver::Solve prints this after the last iteration, its final snapshot and final test;
# a run stopped early on request prints "Optimization stopped early." instead.
_DONE_LINE = "Optimization Done."


def ended_normally(log: Path | str) -> bool:
    """Whether a caffe log shows training run to its end (Solver::Solve's closing line)."""
    log = Path(log)
    if not log.is_file():
        return False
    warnings: list[str] = []
    return any(_DONE_LINE in line for line in _lines(log, warnings))


def describe_exit(rc: int) -> str:
    """Caffe's exit status in words: 'exit 1', 'killed by SIGABRT'."""
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


# ------------------------------------------------------------------------------ when the loss diverges

# Caffe trains on with a loss of NaN (or inf) to max_iter and ends normally: a net that diverged would
# look finished. Its max pooling, fed NaN, may also write out of bounds and abort ("double free or
# corruption"), which looks like any crash. Either way the log says which: the first
# `Iteration N, loss = nan` (or a train or test loss output that is not finite).

@dataclass(frozen=True)
class Divergence:
    """Where a loss first stopped being finite."""

    iteration: int | None   # the iteration of that loss (None: before any `Iteration` line)
    value: str              # as logged: nan, -nan, inf
    path: str
    line: int               # 1-based line of the log
    text: str               # the message, without glog's prefix

    def __str__(self) -> str:
        at = f"iteration {self.iteration}" if self.iteration is not None else "the start"
        return f"loss {self.value} at {at} ({self.path}:{self.line})"


def _nonfinite_loss(msg: str) -> str | None:
    """The value of a loss on this log message that is not a finite number, else None."""
    if m := _ITER_LOSS.search(msg):
        value = m.group(2)
    elif (m := _TRAIN_OUTPUT.search(msg) or _TEST_OUTPUT.search(msg)) and "loss" in m.group(2).lower():
        value = m.group(3)
    elif (m := _SCORE_2014.search(msg)) and m.group(1) == "1":   # 2014 logs: score #1 is the loss
        value = m.group(2)
    else:
        return None
    return None if math.isfinite(float(value)) else value


class Watch:
    """Follows a caffe log while caffe writes it: each `poll()` reads the lines completed since the
    last and returns the first loss that is not finite (then keeps returning it)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.offset = 0
        self.lineno = 0
        self.rest = b""
        self.iteration: int | None = None
        self.found: Divergence | None = None

    def poll(self, to_end: bool = False) -> Divergence | None:
        """`to_end`: the log is complete, its last line may lack a newline (caffe killed)."""
        if self.found is not None:
            return self.found
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return None
        self.offset += len(data)
        *lines, self.rest = (self.rest + data).split(b"\n")
        if to_end:
            lines, self.rest = lines + [self.rest], b""
        for raw in lines:
            self.lineno += 1
            _, msg = glog_line(raw.decode("utf-8", errors="replace").rstrip("\r"))
            if m := _ITERATION.search(msg):   # (a test pass at N is logged as `Iteration N, Testing net`)
                self.iteration = int(m.group(1))
            value = _nonfinite_loss(msg)
            if value is not None:
                self.found = Divergence(self.iteration, value, str(self.path), self.lineno, msg)
                return self.found
        return None


def first_divergence(log: Path | str) -> Divergence | None:
    """The first loss of a whole caffe log that is not finite, else None."""
    return Watch(log).poll(to_end=True)
