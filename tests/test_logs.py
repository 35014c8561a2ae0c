"""The log reader on logs written here in both Caffe formats."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from transfer.core.errors import TransferError
from transfer.caffe.logs import LogError, first_error, is_log_file, log_files, read_logs, read_run
from transfer.results.metrics import net_metric

# A 2014-fork log (yearless glog prefix), as the released .o files have it.
LOG_2014 = """\
I0416 00:31:10.000001 12484 caffe.cpp:99] Starting Optimization
I0416 00:31:12.458560 12484 solver.cpp:217] Iteration 20, lr = 0.01
I0416 00:31:12.458999 12484 solver.cpp:74] Iteration 20, loss = 6.63913
I0416 00:40:00.000000 12484 solver.cpp:96] Iteration 1000, Testing net
I0416 00:41:00.000000 12484 solver.cpp:123] Test score #0: 0.632
I0416 00:41:00.000100 12484 solver.cpp:123] Test score #1: 1.65396
I0416 00:41:01.000000 12484 solver.cpp:217] Iteration 1020, lr = 0.01
I0416 00:41:01.000100 12484 solver.cpp:74] Iteration 1020, loss = 5.5
I0416 00:50:00.000000 12484 solver.cpp:96] Iteration 2000, Testing net
I0416 00:51:00.000000 12484 solver.cpp:123] Test score #0: 0.5
I0416 00:51:00.000100 12484 solver.cpp:123] Test score #1: 2.0
"""

# The restart resumes from the 1000 snapshot and repeats iteration 2000 later: its value wins.
LOG_2014_RESTART = """\
I0420 09:00:00.000000 777 solver.cpp:96] Iteration 2000, Testing net
I0420 09:01:00.000000 777 solver.cpp:123] Test score #0: 0.7
I0420 09:01:00.000100 777 solver.cpp:123] Test score #1: 1.1
I0420 09:10:00.000000 777 solver.cpp:96] Iteration 3000, Testing net
I0420 09:11:00.000000 777 solver.cpp:123] Test score #0: 0.71
I0420 09:11:00.000100 777 solver.cpp:123] Test score #1: 1.0
"""

# A Caffe 1.0 log with glog 0.6 prefixes (year included), written to the formats precisely.
LOG_CAFFE1 = """\
Log file created at: 2026/11/21 20:47:13
Running on machine: node7
Log line format: [IWEF]yyyymmdd hh:mm:ss.uuuuuu threadid file:line] msg
I20261121 20:47:13.041272  9078 caffe.cpp:204] Using GPUs 0
I20261121 20:47:14.100000  9078 solver.cpp:44] Initializing solver from parameters:
test_iter: 1000
test_interval: 1000
I20261121 20:47:20.000000  9078 solver.cpp:330] Iteration 0, Testing net (#0)
I20261121 20:47:21.000000  9078 net.cpp:676] Ignoring source layer fc8
I20261121 20:48:20.000000  9078 solver.cpp:397]     Test net output #0: accuracy = 0.001
I20261121 20:48:20.000100  9078 solver.cpp:397]     Test net output #1: loss = 6.9078 (* 1 = 6.9078 loss)
I20261121 20:48:21.000000  9078 solver.cpp:218] Iteration 0 (0 iter/s, 61.2s/20 iters), loss = 6.91
I20261121 20:48:21.000100  9078 solver.cpp:237]     Train net output #0: loss = 6.91 (* 1 = 6.91 loss)
I20261121 20:48:21.000200  9078 sgd_solver.cpp:105] Iteration 0, lr = 0.01
I20261121 20:48:30.000000  9078 solver.cpp:218] Iteration 20 (2.1 iter/s, 9.5s/20 iters), loss = 6.6
I20261121 20:48:30.000100  9078 solver.cpp:237]     Train net output #0: loss = 6.61 (* 1 = 6.61 loss)
I20261121 20:48:30.000200  9078 sgd_solver.cpp:105] Iteration 20, lr = 0.01
I20261121 20:58:00.000000  9078 solver.cpp:330] Iteration 1000, Testing net (#0)
I20261121 20:58:50.000000  9078 data_layer.cpp:73] Restarting data prefetching from start.
I20261121 20:59:00.000000  9078 solver.cpp:397]     Test net output #0: accuracy = 0.632
I20261121 20:59:00.000100  9078 solver.cpp:397]     Test net output #1: loss = 1.6 (* 1 = 1.6 loss)
I20261121 20:59:01.000000  9078 solver.cpp:218] Iteration 1000 (2.1 iter/s, 9.5s/20 iters), loss = 2.5
I20261121 20:59:01.000200  9078 sgd_solver.cpp:105] Iteration 1000, lr = 0.01
I20261121 21:00:00.000000  9078 solver.cpp:447] Snapshotting to binary proto file snap_iter_1000.caffemodel
I20261121 21:00:01.000000  9078 solver.cpp:330] Iteration 1000, Testing net (#1)
I20261121 21:00:02.000000  9078 solver.cpp:397]     Test net output #0: accuracy = 0.99
I20261121 21:10:00.000000  9078 solver.cpp:310] Iteration 2000, loss = 2.2
I20261121 21:10:00.100000  9078 solver.cpp:330] Iteration 2000, Testing net (#0)
I20261121 21:11:00.000000  9078 solver.cpp:397]     Test net output #0: top-1 = 0.65
I20261121 21:11:00.000100  9078 solver.cpp:397]     Test net output #1: accuracy_top5 = 0.88
I20261121 21:11:00.000200  9078 solver.cpp:397]     Test net output #2: val_loss = 1.5 (* 1 = 1.5 loss)
I20261121 21:11:01.000000  9078 solver.cpp:315] Optimization Done.
"""


def _write(path: Path, text: str, gz: bool = False) -> Path:
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_2014_format_gzipped_with_restart(tmp_path: Path) -> None:
    a = _write(tmp_path / "140415_235449_transfer0A0B.o240406.gz", LOG_2014, gz=True)
    b = _write(tmp_path / "140415_235449_transfer0A0B.o250000.gz", LOG_2014_RESTART, gz=True)
    log = read_logs([a, b])
    assert log.attempts == 2
    assert log.lr == {20: 0.01, 1020: 0.01}
    assert log.train_loss == {20: 6.63913, 1020: 5.5}
    assert log.val_accuracy == {1000: 0.632, 2000: 0.7, 3000: 0.71}   # 2000: restart (later) wins
    assert log.val_loss == {1000: 1.65396, 2000: 1.1, 3000: 1.0}
    assert log.last_iteration == 3000
    its, acc = log.series("val_accuracy")
    assert its.tolist() == [1000, 2000, 3000] and np.allclose(acc, [0.632, 0.7, 0.71])


def test_latest_timestamp_wins_not_file_order(tmp_path: Path) -> None:
    # The restart given first still wins: its lines are later in time.
    a = _write(tmp_path / "140415_235449_x.o1", LOG_2014)
    b = _write(tmp_path / "140415_235449_x.o2", LOG_2014_RESTART)
    assert read_logs([b, a]).val_accuracy[2000] == 0.7


def test_yearless_new_year_rollover(tmp_path: Path) -> None:
    # Dated Dec 31 2014 in the name; the restart on Jan 2 (next year) is later despite "0102" < "1231".
    first = ("I1231 23:00:00.000000 1 solver.cpp:96] Iteration 1000, Testing net\n"
             "I1231 23:01:00.000000 1 solver.cpp:123] Test score #0: 0.3\n")
    second = ("I0102 01:00:00.000000 1 solver.cpp:96] Iteration 1000, Testing net\n"
              "I0102 01:01:00.000000 1 solver.cpp:123] Test score #0: 0.4\n")
    a = _write(tmp_path / "141231_220000_x.o1", first)
    b = _write(tmp_path / "141231_220000_x.o2", second)
    assert read_logs([b, a]).val_accuracy == {1000: 0.4}
    # without dates in the names the year comes from the order of the files
    c = _write(tmp_path / "a.log", first)
    d = _write(tmp_path / "b.log", second)
    assert read_logs([c, d]).val_accuracy == {1000: 0.4}


def test_caffe1_format(tmp_path: Path) -> None:
    log = read_logs([_write(tmp_path / "caffe.log", LOG_CAFFE1)])
    # test net #1 (accuracy 0.99) is not the validation net; `top-1` maps to accuracy, top-5 is ignored
    assert log.val_accuracy == {0: 0.001, 1000: 0.632, 2000: 0.65}
    assert log.val_loss == {0: 6.9078, 1000: 1.6, 2000: 1.5}
    assert log.train_loss == {0: 6.91, 20: 6.6, 1000: 2.5, 2000: 2.2}
    assert log.lr == {0: 0.01, 20: 0.01, 1000: 0.01}
    assert log.last_iteration == 2000


def test_caffe1_restart_overlap_with_year(tmp_path: Path) -> None:
    a = _write(tmp_path / "attempt1.log", LOG_CAFFE1)
    later = ("I20261122 08:00:00.000000 1 solver.cpp:330] Iteration 2000, Testing net (#0)\n"
             "I20261122 08:01:00.000000 1 solver.cpp:397]     Test net output #0: accuracy = 0.66\n"
             "I20261122 08:01:00.000100 1 solver.cpp:397]     Test net output #1: loss = 1.4 (* 1 = 1.4 loss)\n")
    b = _write(tmp_path / "attempt2.log.gz", later, gz=True)
    log = read_logs([a, b])
    assert log.val_accuracy[2000] == 0.66 and log.val_loss[2000] == 1.4
    assert log.attempts == 2


def test_train_net_output_fills_missing_iteration_loss(tmp_path: Path) -> None:
    text = ("I20260101 00:00:00.000000 1 solver.cpp:1] Iteration 40, lr = 0.01\n"
            "I20260101 00:00:00.000100 1 solver.cpp:2]     Train net output #0: loss = 3.25 (* 1 = 3.25 loss)\n")
    assert read_logs([_write(tmp_path / "x.log", text)]).train_loss == {40: 3.25}


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    p = _write(tmp_path / "140415_235449_x.o5.gz", LOG_2014 * 50, gz=True)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    log = read_logs([p])
    assert 1000 in log.val_accuracy and log.warnings


def test_log_file_selection(tmp_path: Path) -> None:
    run = tmp_path / "transfer0A0B_1_3"
    run.mkdir()
    for name in ("140415_235449_transfer0A0B.o240406.gz", "140415_235449_transfer0A0B.o99999.gz",
                 "catlog.oMANUAL.gz", "train.log", "imagenet_train.prototxt", "imagenet_mean.binaryproto"):
        (run / name).write_text("")
    (run / "imagenet_train_leveldb").mkdir()
    names = [p.name for p in log_files(run)]
    # natural order: job 99999 before 240406
    assert names == ["140415_235449_transfer0A0B.o99999.gz", "140415_235449_transfer0A0B.o240406.gz",
                     "catlog.oMANUAL.gz", "train.log"]
    assert not is_log_file(run / "imagenet_train_leveldb")
    assert read_run(tmp_path / "nowhere") is None


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="nope.log"):
        read_logs([tmp_path / "nope.log"])


def test_metric_top10_final_best(tmp_path: Path) -> None:
    lines = []
    accs = [0.1 * (i % 7) for i in range(1, 16)]  # 15 tests
    for i, a in enumerate(accs, start=1):
        lines.append(f"I0416 01:{i:02d}:00.000000 1 solver.cpp:96] Iteration {1000 * i}, Testing net")
        lines.append(f"I0416 01:{i:02d}:01.000000 1 solver.cpp:123] Test score #0: {a}")
    m = net_metric(read_logs([_write(tmp_path / "r.log", "\n".join(lines) + "\n")]), k=10)
    assert m is not None and m.k == 10
    assert m.metric == pytest.approx(np.mean(sorted(accs)[-10:]))
    assert m.final == pytest.approx(accs[-1]) and m.best == pytest.approx(0.6)
    assert m.iterations == 15000 and m.tests == 15 and m.attempts == 1
    # fewer than 10 tests: the mean of all of them
    short = read_logs([_write(tmp_path / "s.log", "\n".join(lines[:6]) + "\n")])
    assert net_metric(short, k=10).metric == pytest.approx(np.mean(accs[:3]))
    # without k: scaled to the tests (15 tests: k = 1, the best one)
    assert net_metric(read_logs([tmp_path / "r.log"])).metric == pytest.approx(0.6)
    assert net_metric(read_logs([_write(tmp_path / "e.log", "")])) is None


# ------------------------------------------------------------------------------ values that are not results

@pytest.mark.parametrize("line, what", [
    ("I0416 00:41:00.000000 1 solver.cpp:123] Test score #0: 1.5", "validation accuracy 1.5 is outside [0, 1]"),
    ("I0416 00:41:00.000000 1 solver.cpp:123] Test score #0: -0.01", "validation accuracy -0.01 is outside [0, 1]"),
    ("I0416 00:41:00.000000 1 solver.cpp:397]     Test net output #0: accuracy = 63.2",
     "validation accuracy 63.2 is outside [0, 1]"),
    ("I0416 00:41:00.000000 1 solver.cpp:397]     Test net output #0: accuracy = nan",
     "validation accuracy is nan, not a finite number"),
    ("I0416 00:41:00.000000 1 solver.cpp:123] Test score #1: inf", "validation loss is inf"),
    ("I0416 00:41:01.000000 1 solver.cpp:74] Iteration 1020, loss = nan", "training loss is nan"),
    ("I0416 00:41:01.000000 1 solver.cpp:74] Iteration 1020, lr = -inf", "learning rate is -inf"),
])
def test_values_that_cannot_be_results_name_file_and_line(tmp_path: Path, line: str, what: str) -> None:
    text = ("I0416 00:40:00.000000 1 solver.cpp:96] Iteration 1000, Testing net\n"
            "I0416 00:40:30.000000 1 solver.cpp:123] Test score #0: 0.5\n" + line + "\n")
    p = _write(tmp_path / "attempt-001.log", text)
    with pytest.raises(LogError) as err:
        read_logs([p])
    assert str(err.value).startswith(f"{p}:3: {what}")
    assert read_logs([p], strict=False).val_accuracy  # the lenient reading (status lines) still reads it


def test_report_lists_a_rejected_log_and_fails(tmp_path: Path, capsys) -> None:
    import argparse

    from transfer.results import report
    from transfer.plan.load import load_plan

    plan = load_plan("tiny")
    runs = tmp_path / "runs"
    good, bad = plan.nets[0], plan.nets[1]
    for net, acc in ((good, "0.5"), (bad, "1.7")):
        d = runs / net.name / "logs"
        d.mkdir(parents=True)
        (d / "attempt-001.log").write_text(
            "I0416 00:40:00.000000 1 solver.cpp:96] Iteration 20, Testing net\n"
            f"I0416 00:40:30.000000 1 solver.cpp:123] Test score #0: {acc}\n")
    parser = argparse.ArgumentParser()
    report.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--plan", "tiny", "--logs", str(runs), "--out", str(tmp_path / "r"),
                              "--no-figures"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    bad_log = runs / bad.name / "logs" / "attempt-001.log"
    assert f"{bad.name}: log rejected: {bad_log}:2: validation accuracy 1.7 is outside [0, 1]" in err
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert bad.name in rep["missing"] and bad.name in rep["rejected"]
    assert rep["nets"][bad.name]["metric"] is None and rep["nets"][good.name]["metric"] == 0.5
    assert f"{bad_log}:2:" in (tmp_path / "r" / "report.md").read_text()


# ------------------------------------------------------------------------------ why caffe failed

# A failed CHECK as glog writes it: the cause, then the stack that the last lines of the log show.
MISSING_LMDB = """\
I20261121 20:47:13.041272  9078 caffe.cpp:204] Using GPUs 0
I20261121 20:47:14.100000  9078 solver.cpp:44] Initializing solver from parameters:
I20261121 20:47:14.200000  9078 net.cpp:84] Creating Layer data
I20261121 20:47:14.200100  9078 net.cpp:380] data -> data
F20261121 20:47:14.201000  9080 db_lmdb.hpp:15] Check failed: mdb_status == 0 (2 vs. 0) No such file or directory
*** Check failure stack trace: ***
    @     0x7f3c2a1b2daa  google::LogMessage::Fail()
    @     0x7f3c2a1b2ce4  google::LogMessage::SendToLog()
    @     0x7f3c2a1b26e6  google::LogMessage::Flush()
    @     0x7f3c2a1b578e  google::LogMessageFatal::~LogMessageFatal()
    @     0x7f3c2a6d6d38  caffe::db::LMDB::Open()
    @     0x7f3c2a63c6a1  caffe::DataLayer<>::DataLayer()
    @     0x7f3c2a63c8e2  caffe::Creator_DataLayer<>()
    @     0x7f3c2a5c1d47  caffe::Net<>::Init()
    @     0x7f3c2a5c4361  caffe::Net<>::Net()
    @     0x7f3c2a5d2a4a  caffe::Solver<>::InitTrainNet()
    @     0x7f3c2a5d3e67  caffe::Solver<>::Init()
    @     0x7f3c2a5d418f  caffe::Solver<>::Solver()
    @     0x7f3c2a5e8a21  caffe::Creator_SGDSolver<>()
    @     0x55d7d1a0c4f2  train()
    @     0x55d7d1a09a9c  main
    @     0x7f3c282ed830  __libc_start_main
    @     0x55d7d1a0a379  _start
    @              (nil)  (unknown)
"""

# protobuf names the bad field before glog's FATAL line says the file failed to parse.
BAD_PROTOTXT = """\
I1121 20:47:13.041272  9078 caffe.cpp:204] Using CPU
[libprotobuf ERROR google/protobuf/text_format.cc:298] Error parsing text-format caffe.NetParameter: 12:9: Message type "caffe.LayerParameter" has no field named "bogus".
F1121 20:47:13.041900  9078 upgrade_proto.cpp:88] Check failed: ReadProtoFromTextFile(param_file, param) Failed to parse NetParameter file: train.prototxt
*** Check failure stack trace: ***
    @     0x7f3c2a1b2daa  google::LogMessage::Fail()
"""

# Labels past the last output: no glog line at all, the C library's abort message.
HEAP = """\
I20261121 20:48:21.000200  9078 sgd_solver.cpp:105] Iteration 0, lr = 0.01
free(): invalid next size (normal)
*** Aborted at 1700000000 (unix time) try "date -d @1700000000" if you are using GNU date ***
PC: @     0x7f3c28309e97 gsignal
*** SIGABRT (@0x2376) received by PID 9078 (TID 0x7f3c2c6b8740) from PID 9078; stack trace: ***
    @     0x7f3c28309e97 gsignal
"""

# An ERROR line before the FATAL one is the cause.
E_THEN_F = """\
I1121 20:47:13.041272  9078 caffe.cpp:204] Using CPU
W1121 20:47:13.100000  9078 net.cpp:755] Copying from fc8 to fc8 target blob 0 (shape mismatch ignored)
E1121 20:47:13.200000  9078 io.cpp:80] Could not open or find file /data/mean.binaryproto
F1121 20:47:13.300000  9078 data_transformer.cpp:28] Check failed: ReadProtoFromBinaryFile(mean_file, &blob_proto)
*** Check failure stack trace: ***
"""


@pytest.mark.parametrize("text, line, message, where", [
    (MISSING_LMDB, 5, "Check failed: mdb_status == 0 (2 vs. 0) No such file or directory", "db_lmdb.hpp:15"),
    (BAD_PROTOTXT, 2, '[libprotobuf ERROR google/protobuf/text_format.cc:298] Error parsing text-format '
                      'caffe.NetParameter: 12:9: Message type "caffe.LayerParameter" has no field named "bogus".', ""),
    (HEAP, 2, "free(): invalid next size (normal)", ""),
    (E_THEN_F, 3, "Could not open or find file /data/mean.binaryproto", "io.cpp:80"),
])
def test_first_error_line_not_the_stack(tmp_path: Path, text: str, line: int, message: str, where: str) -> None:
    p = _write(tmp_path / "attempt-002.log", text)
    err = first_error(p)
    assert err is not None and (err.line, err.text, err.where) == (line, message, where)
    assert str(err).startswith(f"{p}:{line}: {message}")


def test_the_cause_is_above_the_last_lines() -> None:
    """Why the tail of a log is not enough: a missing LMDB's cause is above its last 15 lines."""
    assert "Check failed" not in "\n".join(MISSING_LMDB.splitlines()[-15:])


def test_no_error_line_in_a_clean_log(tmp_path: Path) -> None:
    assert first_error(_write(tmp_path / "ok.log", LOG_CAFFE1)) is None
    assert first_error(tmp_path / "absent.log") is None
    gz = _write(tmp_path / "x.log.gz", MISSING_LMDB, gz=True)
    assert first_error(gz).line == 5
