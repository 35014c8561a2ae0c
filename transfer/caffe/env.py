"""Find the Caffe in use: the `caffe` binary, its tools, pycaffe and caffe_pb2.

Where Caffe is, in order: the CAFFE_ROOT environment variable; the root recorded by
`make caffe` in the virtual environment (`<venv>/caffe-root`). A root has the layout of a
BVLC Makefile build: `build/tools/caffe`, `build/tools/upgrade_net_proto_text`, `python/caffe`.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from ..core.errors import TransferError

FIX = "run `make caffe` (or set CAFFE_ROOT to an existing Caffe build)"


def caffe_root() -> Path:
    env = os.environ.get("CAFFE_ROOT")
    if env:
        return Path(env)
    recorded = Path(sys.prefix) / "caffe-root"
    if recorded.is_file():
        return Path(recorded.read_text().strip())
    raise TransferError(f"no Caffe configured: CAFFE_ROOT is unset and {recorded} does not exist; {FIX}")


def tool(name: str) -> Path:
    """Path of a Caffe tool binary (`caffe`, `upgrade_net_proto_text`, ...)."""
    root = caffe_root()
    for cand in (root / "build" / "tools" / name, root / "bin" / name):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    raise TransferError(f"Caffe tool '{name}' not found under {root}/build/tools; {FIX}")


def caffe_binary() -> Path:
    return tool("caffe")


@lru_cache(maxsize=1)
def caffe_pb2() -> ModuleType:
    """caffe_pb2 loaded straight from pycaffe's file, without importing pycaffe (fast, no _caffe.so)."""
    # Registered under pycaffe's own module name: the protobuf runtime refuses to load
    # caffe.proto twice, so a later `import caffe` must find this very module.
    name = "caffe.proto.caffe_pb2"
    if name in sys.modules:
        return sys.modules[name]
    path = caffe_root() / "python" / "caffe" / "proto" / "caffe_pb2.py"
    if not path.is_file():
        raise TransferError(f"{path} not found; {FIX}")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_caffe(quiet: bool = True) -> ModuleType:
    """Import pycaffe from the configured root (glog kept quiet unless asked)."""
    if quiet:
        os.environ.setdefault("GLOG_minloglevel", "2")
    python_dir = str(caffe_root() / "python")
    if python_dir not in sys.path:
        sys.path.insert(0, python_dir)
    try:
        import caffe  # noqa: PLC0415
    except ImportError as exc:
        raise TransferError(f"cannot import pycaffe from {python_dir}: {exc}; {FIX}") from exc
    return caffe
