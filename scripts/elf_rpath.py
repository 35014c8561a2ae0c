"""Turn the DT_RUNPATH of ELF shared libraries into a DT_RPATH, in place (scripts/cuda-pypi.sh).

The PyPI CUDA and cuDNN libraries find each other through a RUNPATH of `$ORIGIN`, which the dynamic
loader searches only AFTER LD_LIBRARY_PATH: another cuDNN or cuBLAS on that path (a module system's,
a PyTorch wheel's) then stands in for a sub-library such as libcudnn_cnn.so.9 or libcublasLt.so.13,
and the first convolution fails or runs another version's code. A DT_RPATH with the same directories
is searched BEFORE LD_LIBRARY_PATH. Only the tag changes (same string, same size), so nothing else of
the file moves.

    python3 elf_rpath.py FILE...     prints one line per file: changed, already RPATH, or no RUNPATH
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

DT_NULL, DT_RPATH, DT_RUNPATH = 0, 15, 29
PT_DYNAMIC = 2


def _dynamic_entries(data: bytes) -> tuple[int, int]:
    """(file offset, size) of the PT_DYNAMIC segment of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for k in range(phnum):
        p_type, = struct.unpack_from("<I", data, phoff + k * phentsize)
        if p_type == PT_DYNAMIC:
            offset, = struct.unpack_from("<Q", data, phoff + k * phentsize + 8)
            size, = struct.unpack_from("<Q", data, phoff + k * phentsize + 32)
            return offset, size
    raise ValueError("no dynamic section (a static file?)")


def runpath_to_rpath(path: Path, back: bool = False) -> str:
    """Rewrite the file's DT_RUNPATH tag as DT_RPATH (`back`: the other way, as the wheels ship it);
    returns what was done."""
    if back:
        return _retag(path, DT_RPATH, DT_RUNPATH)
    return _retag(path, DT_RUNPATH, DT_RPATH)


def _retag(path: Path, old: int, new: int) -> str:
    names = {DT_RPATH: "RPATH", DT_RUNPATH: "RUNPATH"}
    with path.open("r+b") as f:
        head = f.read(1 << 16)
        offset, size = _dynamic_entries(head)
        f.seek(offset)
        dyn = f.read(size)
        tags = [struct.unpack_from("<q", dyn, i)[0] for i in range(0, size - 15, 16)]
        tags = tags[:tags.index(DT_NULL)] if DT_NULL in tags else tags
        if old not in tags:
            return f"already {names[new]}" if new in tags else f"no {names[old]}"
        if new in tags:   # both: the loader ignores DT_RPATH; leave such a file as it is
            return "both RPATH and RUNPATH: left alone"
        f.seek(offset + 16 * tags.index(old))
        f.write(struct.pack("<q", new))
    return f"{names[old]} -> {names[new]}"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    bad = 0
    for name in argv:
        try:
            print(f"{name}: {runpath_to_rpath(Path(name))}")
        except (OSError, ValueError, struct.error) as exc:
            print(f"elf_rpath: error: {name}: {exc}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
