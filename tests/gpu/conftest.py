"""The GPU tier (`make test-gpu`): runs on a machine with an NVIDIA GPU and the CUDA build of Caffe.

Where no GPU is visible every test here is skipped with the reason. TRANSFER_GPU_TIER_DEVICE=cpu runs
the same tests on the CPU build instead (`make test-gpu TIER_DEVICE=cpu`), so their code is exercised
on a machine without a GPU; that variant never writes BENCHMARKS.md.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/, for tinyrun

DEVICE_ENV = "TRANSFER_GPU_TIER_DEVICE"


def _why_not() -> str:
    """Empty when the tier can run on GPU 0; else why not."""
    from transfer.caffe import gpu
    from transfer.core.errors import TransferError
    devices, why = gpu.visible_gpus()
    if not devices:
        return f"no GPU visible: {why}"
    try:
        build = gpu.current_build()
    except TransferError as exc:
        return str(exc)
    if build.gpu is False:
        return "the Caffe build in use is CPU only: build the CUDA one with `CAFFE_GPU=1 make caffe`"
    return ""


@pytest.fixture(scope="session")
def device() -> int | None:
    """GPU id the tier trains on (0), or None for the CPU variant."""
    return None if os.environ.get(DEVICE_ENV, "").lower() == "cpu" else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(DEVICE_ENV, "").lower() == "cpu":
        return
    why = _why_not()
    if why:
        mark = pytest.mark.skip(reason=f"GPU tier skipped: {why} (run `make test-gpu` on a GPU node, "
                                       f"or {DEVICE_ENV}=cpu for its CPU variant)")
        for item in items:
            if "tests/gpu/" in str(item.fspath).replace(os.sep, "/"):
                item.add_marker(mark)
