"""`make test` sets TRANSFER_TEST_REQUIRE (e.g. "caffe,slurm,wordnet"): a test skipped for a missing
part named there fails the run instead, so a broken set-up cannot pass as a green run of fewer tests."""
from __future__ import annotations

import os

import pytest

REQUIRED = [w.strip().lower() for w in os.environ.get("TRANSFER_TEST_REQUIRE", "").split(",") if w.strip()]
_skipped_required: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: needs a built Caffe to train or load nets, a SLURM cluster, or draws every figure; "
                   "`make test-fast` leaves these out")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and REQUIRED:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if any(word in reason.lower() for word in REQUIRED):
            _skipped_required.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_required:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    for line in _skipped_required:
        terminalreporter.write_line(f"REQUIRED BUT SKIPPED (TRANSFER_TEST_REQUIRE): {line}", red=True)


@pytest.fixture(scope="module")
def pb2():
    """caffe_pb2 of the configured Caffe; tests that need it skip without one."""
    from transfer.caffe.env import caffe_pb2  # noqa: PLC0415
    from transfer.core.errors import TransferError  # noqa: PLC0415
    try:
        return caffe_pb2()
    except TransferError as exc:
        pytest.skip(f"Caffe not configured: {exc}")
