"""The GPU side of a Caffe build and of the node it runs on.

- what the build is: CPU only or CUDA, with the CUDA/cuDNN versions and architectures that
  scripts/build-caffe.sh recorded in BUILD_INFO (for another build: what libcaffe.so links);
- what the node has: the GPUs nvidia-smi lists (name, driver, the driver's CUDA version);
- a tiny forward/backward pass through the `caffe` binary (`caffe time`), on a GPU or the CPU;
- the record a GPU training attempt keeps in its run directory.

Only the `caffe` binary and caffe_pb2 are needed here, never pycaffe: a training node may have no
Python that can load _caffe.so.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from . import env as caffe_env
from ..core.errors import TransferError

TIMEOUT = 120
FIX_GPU_BUILD = "build the CUDA one: `CAFFE_GPU=1 make caffe` (README, \"GPU\")"


@dataclass
class Build:
    gpu: bool | None            # None: unknown (an external build that cannot be inspected)
    cuda: str | None = None     # toolkit version the build compiled with
    cudnn: str | None = None
    archs: list[str] | None = None
    toolkit: str | None = None  # "system" or "pypi" (scripts/build-caffe.sh), "external" otherwise

    def describe(self) -> str:
        if self.gpu is None:
            return "unknown (no BUILD_INFO and libcaffe.so could not be inspected)"
        if not self.gpu:
            return "CPU only"
        parts = [f"CUDA {self.cuda or '?'}", f"cuDNN {self.cudnn}" if self.cudnn else "no cuDNN"]
        if self.archs:
            parts.append("archs " + " ".join(self.archs))
        if self.toolkit:
            parts.append(f"toolkit {self.toolkit}")
        return "GPU (" + ", ".join(parts) + ")"


def _linked(lib: Path) -> str:
    try:
        return subprocess.run(["ldd", str(lib)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def build_of(root: Path) -> Build:
    """The build at `root`, from its BUILD_INFO, else from what its libcaffe.so links."""
    path = root / "BUILD_INFO"
    if path.is_file():
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise TransferError(f"{path} is not valid JSON ({exc}); rebuild with `make caffe`") from exc
        gpu = bool(info.get("options", {}).get("gpu")) if isinstance(info, dict) else None
        cuda = info.get("cuda") if isinstance(info, dict) and isinstance(info.get("cuda"), dict) else {}
        return Build(gpu=gpu, cuda=cuda.get("version"), cudnn=cuda.get("cudnn"), archs=cuda.get("archs"),
                     toolkit=cuda.get("toolkit"))
    lib = root / "build" / "lib" / "libcaffe.so"
    linked = _linked(lib) if lib.is_file() else ""
    if not linked:
        return Build(gpu=None, toolkit="external")
    cudart = re.search(r"libcudart\.so\.(\d+)", linked)
    cudnn = re.search(r"libcudnn\.so\.(\d+)", linked)
    return Build(gpu=bool(cudart), cuda=cudart.group(1) if cudart else None,
                 cudnn=cudnn.group(1) if cudnn else None, toolkit="external")


def current_build() -> Build:
    return build_of(caffe_env.caffe_root())


def require_gpu_build() -> Build:
    """The build in use, or a clear error when it cannot train on a GPU."""
    build = current_build()
    if build.gpu is False:
        raise TransferError(f"the Caffe at {caffe_env.caffe_root()} is a CPU-only build and cannot train "
                            f"on a GPU; {FIX_GPU_BUILD}, or train with --cpu")
    return build


@dataclass
class Device:
    index: str          # what nvidia-smi calls it (physical index)
    name: str
    driver: str
    memory_mib: str
    uuid: str


_QUERY = "index,name,driver_version,memory.total,uuid"


def visible_gpus() -> tuple[list[Device], str]:
    """(GPUs nvidia-smi lists, why none when the list is empty). CUDA_VISIBLE_DEVICES is applied."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return [], "nvidia-smi not found (no NVIDIA driver on this machine)"
    try:
        proc = subprocess.run([exe, f"--query-gpu={_QUERY}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"nvidia-smi failed: {exc}"
    if proc.returncode != 0:
        tail = (proc.stderr + proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return [], f"nvidia-smi failed (exit {proc.returncode}): {tail[0]}"
    devices = []
    for line in proc.stdout.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 5:
            devices.append(Device(*fields))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # the order CUDA numbers them in: logical id K is the K-th entry
        by_key = {d.index: d for d in devices} | {d.uuid: d for d in devices}
        devices = [by_key[k.strip()] for k in visible.split(",") if k.strip() in by_key]
    if not devices:
        return [], "nvidia-smi lists no GPU" + (" in CUDA_VISIBLE_DEVICES" if visible is not None else "")
    return devices, ""


def driver_cuda() -> str | None:
    """The highest CUDA version the installed driver supports (nvidia-smi's header)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"CUDA Version:\s*([0-9.]+)", out)
    return m.group(1) if m else None


# The oldest NVIDIA driver (major version) that runs each CUDA major version (NVIDIA's CUDA
# compatibility table: a CUDA 12.x build needs 525.60 or newer, a CUDA 13.x build 580 or newer).
MIN_DRIVER = {11: 450, 12: 525, 13: 580}


def driver_problem(build: Build, driver: str, driver_cuda_version: str | None = None) -> tuple[str, str] | None:
    """(why, what to do) when the NVIDIA driver `driver` (e.g. "550.54.15") cannot run `build`; None if it can."""
    try:
        cuda_major = int(str(build.cuda).split(".")[0])
        driver_major = int(driver.split(".")[0])
    except ValueError:
        return None   # an unknown build or driver version: nothing to compare
    need = MIN_DRIVER.get(cuda_major)
    if need is None or driver_major >= need:
        return None
    supports = f" (it supports CUDA up to {driver_cuda_version})" if driver_cuda_version else ""
    older = max((c for c, d in MIN_DRIVER.items() if d <= driver_major), default=None)
    rebuild = (f"or build Caffe with a CUDA {older} toolkit, which that driver runs "
               f"(`CAFFE_GPU=1 CAFFE_CUDA=system make caffe` with its nvcc on PATH)") if older else \
        "no CUDA version this project builds with runs on it"
    return (f"the NVIDIA driver {driver}{supports} is too old for this Caffe, built with CUDA {build.cuda}, "
            f"which needs driver {need} or newer",
            f"update the NVIDIA driver to {need} or newer (on a cluster: ask its administrators), {rebuild}")


def attempt_record(gpu: int) -> dict:
    """What a GPU training attempt logs about its device and build (attempts.jsonl); an error when
    the build in use cannot run on a GPU, or the node's driver cannot run the build, before anything
    is started."""
    build = require_gpu_build()
    devices, why = visible_gpus()
    problem = driver_problem(build, devices[0].driver, driver_cuda()) if devices and build.gpu else None
    if problem:
        raise TransferError(f"{problem[0]}: {problem[1]}")
    rec: dict = {"cuda_build": build.cuda, "cudnn": build.cudnn, "archs": build.archs}
    if gpu < len(devices):
        d = devices[gpu]
        rec.update(device=d.name, device_uuid=d.uuid, driver=d.driver, cuda_driver=driver_cuda())
    else:
        rec.update(device=None, device_why=why or f"GPU {gpu} not among the {len(devices)} visible")
    return rec


# A net small enough to run anywhere in well under a second, with every kind of layer the
# paper's nets use on the GPU path (convolution, pooling, LRN, inner product, dropout, loss).
# One filler per top: a gaussian label would be negative half the time and abort SoftmaxWithLoss.
TINY_NET = """name: "doctor"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 dim: 16 dim: 16 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "norm" type: "LRN" bottom: "pool" top: "norm" lrn_param { local_size: 3 } }
layer { name: "fc" type: "InnerProduct" bottom: "norm" top: "fc"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


@dataclass
class TinyRun:
    ok: bool
    where: str            # "GPU 0" or "CPU"
    ms: float | None      # forward-backward per iteration, as `caffe time` reports it
    detail: str

    def to_json(self) -> dict:
        return asdict(self)


def tiny_forward_backward(gpu: int | None) -> TinyRun:
    """`caffe time` of TINY_NET on GPU `gpu` (None: the CPU): loads the build's CUDA libraries,
    runs every layer forward and backward, and reports the time per iteration."""
    where = "CPU" if gpu is None else f"GPU {gpu}"
    exe = caffe_env.caffe_binary()
    with tempfile.TemporaryDirectory(prefix="transfer-tiny-") as tmp:
        model = Path(tmp) / "tiny.prototxt"
        model.write_text(TINY_NET)
        cmd = [str(exe), "time", f"-model={model}", "-iterations=3"]
        if gpu is not None:
            cmd.append(f"-gpu={gpu}")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                                  env={**os.environ, "GLOG_logtostderr": "1", "GLOG_minloglevel": "0"})
        except (OSError, subprocess.SubprocessError) as exc:
            return TinyRun(False, where, None, f"{exe} time failed to run: {exc}")
    out = proc.stderr + proc.stdout
    m = re.search(r"Average Forward-Backward:\s*([0-9.]+)\s*ms", out)
    if proc.returncode != 0 or not m:
        lines = [ln for ln in out.splitlines() if ln.strip()]
        why = lines[-1].strip() if lines else "no output"
        return TinyRun(False, where, None, f"`caffe time` exit {proc.returncode}: {why}")
    return TinyRun(True, where, float(m.group(1)), f"forward+backward of a tiny net: {m.group(1)} ms/iter")
