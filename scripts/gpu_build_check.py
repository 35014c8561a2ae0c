"""What `make check-gpu-build` shows of the CUDA build it linked: the CUDA and cuDNN versions, the
cuDNN layers' GPU functions as `nm` lists them in libcaffe.so, and that every symbol of the library
resolves against the libraries its rpath finds (`ldd -r`). Exit 1 naming what is missing.

    python3 gpu_build_check.py ROOT      (ROOT: a build of scripts/build-caffe.sh with CAFFE_GPU=1)
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

# The cuDNN layers the paper's nets run on a GPU, and the functions each must define for float and
# double: a layer compiled without its .cu part, or left out of the build, lacks them.
CUDNN_LAYERS = {
    "CuDNNConvolutionLayer": ("LayerSetUp", "Reshape", "Forward_gpu", "Backward_gpu"),
    "CuDNNLRNLayer": ("Forward_gpu", "Backward_gpu"),
    "CuDNNPoolingLayer": ("Forward_gpu", "Backward_gpu"),
}


def expected_symbols() -> list[str]:
    return [f"caffe::{layer}<{t}>::{fn}(" for layer, fns in CUDNN_LAYERS.items()
            for t in ("float", "double") for fn in fns]


def defined_symbols(lib: Path) -> list[str]:
    """Demangled names of the functions libcaffe.so defines (`nm -DC --defined-only`)."""
    out = subprocess.run(["nm", "-DC", "--defined-only", str(lib)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return [line.split(" ", 2)[2] for line in out.splitlines() if line.count(" ") >= 2]


def cudnn_lines(symbols: list[str]) -> tuple[list[str], list[str]]:
    """(the defined symbols of the cuDNN layers' functions, the expected ones missing)."""
    found = [s for s in symbols if any(s.startswith(e) for e in expected_symbols())]
    missing = [e for e in expected_symbols() if not any(s.startswith(e) for s in found)]
    return sorted(found), missing


def unresolved(lib: Path) -> list[str]:
    """Symbols of `lib` that the libraries the loader finds for it do not define (`ldd -r`)."""
    proc = subprocess.run(["ldd", "-r", str(lib)], capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    return [ln.strip() for ln in text.splitlines() if "undefined symbol" in ln or "not found" in ln]


def check(root: Path) -> list[str]:
    """Lines to print; raises SystemExit(1) with the problems."""
    info = json.loads((root / "BUILD_INFO").read_text())
    cuda = info.get("cuda") or {}
    lib = root / "build" / "lib" / "libcaffe.so"
    lines = [f"check-gpu-build: {root.name}: CUDA {cuda.get('version')}, cuDNN {cuda.get('cudnn') or 'none'}, "
             f"archs {' '.join(cuda.get('archs') or [])}"]
    problems = []
    if not cuda.get("cudnn"):
        problems.append("the build has no cuDNN (BUILD_INFO cuda.cudnn is empty)")
    needed = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, timeout=60).stdout
    cudnn_needed = re.findall(r"\[(libcudnn[^\]]*)\]", needed)
    lines.append(f"check-gpu-build: libcaffe.so needs {', '.join(cudnn_needed) or 'no libcudnn'}")
    if not cudnn_needed:
        problems.append("libcaffe.so does not link libcudnn")
    found, missing = cudnn_lines(defined_symbols(lib))
    lines.append(f"check-gpu-build: nm -DC {lib.name}: {len(found)} cuDNN layer functions defined:")
    lines += [f"  {s}" for s in found]
    problems += [f"not defined in libcaffe.so: {m}...)" for m in missing]
    problems += [f"ldd -r libcaffe.so: {u}" for u in unresolved(lib)]
    if problems:
        print("\n".join(lines))
        sys.exit("check-gpu-build: error: " + "\n  ".join(problems))
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "BUILD_INFO").is_file():
        sys.exit(f"usage: gpu_build_check.py ROOT (a CUDA build with BUILD_INFO); got {sys.argv[1:]}")
    print("\n".join(check(Path(sys.argv[1]))))
