"""Markers, shared fixtures, and the rule that a required part cannot be silently skipped.

Markers: `requires_caffe` (runs the caffe binary or pycaffe: a built Caffe; implies `slow`, and skips
with the reason where none is built) and `slow` (training, a SLURM cluster, every figure). `make
test-fast` runs `-m "not slow"`: nothing there starts Caffe (tests/test_fast_tier.py proves it).
`make test` sets TRANSFER_TEST_REQUIRE (e.g. "caffe,slurm,wordnet"): a test skipped for a missing
part named there fails the run instead, so a broken set-up cannot pass as a green run of fewer tests.
The test helpers (tinyrun, slurm_cluster) live beside the tests, which pytest puts on sys.path."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import tinyrun

REQUIRED = [w.strip().lower() for w in os.environ.get("TRANSFER_TEST_REQUIRE", "").split(",") if w.strip()]
_skipped_required: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: trains nets, needs a SLURM cluster, or draws every figure; `make test-fast` leaves "
                   "these out")
    config.addinivalue_line(
        "markers", "requires_caffe: runs the caffe binary or pycaffe (a built Caffe); implies slow")
    config.addinivalue_line(
        "markers", "bundle: makes a node bundle and builds Caffe from it offline (`make test-bundle`, several "
                   "minutes); `make test` leaves it out; implies slow")


@pytest.hookimpl(tryfirst=True)   # before `-m "not slow"` deselects: requires_caffe must count as slow
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    have_caffe = None
    for item in items:
        if item.get_closest_marker("bundle") is not None:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("requires_caffe") is None:
            continue
        item.add_marker(pytest.mark.slow)
        if have_caffe is None:
            have_caffe = tinyrun.caffe_available()
        if not have_caffe:
            item.add_marker(pytest.mark.skip(reason="Caffe is not built (make caffe)"))


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


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The tiny plan's datasets, made once a session by the real data stages (tinyrun.shared_data)."""
    return tinyrun.shared_data(tmp_path_factory)


@pytest.fixture(scope="session")
def check_root() -> Path:
    """The CUDA check build (`make check-gpu-build`: cuDNN linked, no GPU needed to load it)."""
    recorded = Path(sys.prefix) / "caffe-gpu-check"
    root = Path(recorded.read_text().strip()) if recorded.is_file() else None
    if root is None or not (root / "build/lib/libcaffe.so").is_file():
        pytest.skip("the CUDA check build of Caffe is not built (make check-gpu-build)")
    return root
