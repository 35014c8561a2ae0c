"""The thread count of the BLAS libraries loaded in this process: numpy's OpenBLAS (the Gram products)
and the one Caffe links (its CPU forward passes). Set after loading, by the libraries' own setters,
because the environment variables (OPENBLAS_NUM_THREADS) are read only when a library loads. On a
machine whose cores are busy, many BLAS threads on small matrices wait on each other: one thread
computed a small plan's Gram products 30x faster than two on 2 cores at a load average of 15."""
from __future__ import annotations

import ctypes
from pathlib import Path

# OpenBLAS as Debian builds it, as numpy's wheels bundle it (scipy-openblas, 64-bit integers)
SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
           "openblas_set_num_threads64_")


def blas_libraries() -> list[str]:
    """Paths of the shared libraries with 'blas' in their name mapped into this process."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:   # not Linux: nothing to find this way
        return []
    paths = {line.split()[-1] for line in maps if "blas" in line.rsplit("/", 1)[-1].lower() and "/" in line}
    return sorted(paths)


def set_blas_threads(threads: int) -> list[str]:
    """Every loaded OpenBLAS to `threads` threads; returns the libraries set."""
    done = []
    for path in blas_libraries():
        lib = ctypes.CDLL(path)
        for name in SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(threads))
                done.append(Path(path).name)
                break
    return done
