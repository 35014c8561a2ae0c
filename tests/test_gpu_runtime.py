"""How the built Caffe loads its libraries, checked without a GPU on the builds `make test` makes: the
CUDA check build (`make check-gpu-build`, cuDNN linked; its root in .venv/caffe-gpu-check) and the CPU
build of the venv.

- the cuDNN layers' GPU functions are in libcaffe.so (`nm`), and a build without cuDNN is refused;
- no rpath names the cache or the temporary `.partial` tree, and none is a RUNPATH (which
  LD_LIBRARY_PATH would override); no binary carries such a path at all;
- a moved cache still runs (the cache seen at another path, the original path emptied);
- with decoy libcudnn/libcublas/libnvrtc files first on LD_LIBRARY_PATH, every CUDA and cuDNN library,
  the sub-libraries cuDNN opens itself included, comes from the build's own toolkit (LD_DEBUG=libs);
- the PyPI toolkit has NVRTC where cuDNN's engines look for it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transfer import REPO
from transfer.caffe import gpu

# Each test runs or loads a built Caffe (the check build, or the CPU build): never in `make test-fast`.
pytestmark = pytest.mark.requires_caffe

DECOYS = ["libcudnn.so.9", "libcudnn_ops.so.9", "libcudnn_ops.so.9.13.0", "libcudnn_cnn.so.9",
          "libcudnn_cnn.so.9.13.0", "libcudnn_graph.so.9", "libcudnn_graph.so.9.13.0", "libcudnn_graph.so.9.13",
          "libcudnn_engines_precompiled.so.9", "libcudnn_heuristic.so.9", "libcublas.so.13",
          "libcublasLt.so.13", "libcudart.so.13", "libcurand.so.10", "libnvrtc.so.13"]


@pytest.fixture(scope="module")
def toolkit(check_root) -> Path:
    """The PyPI toolkit the check build links: <cache>/cuda-pypi/<key>/nvidia."""
    nvcc = Path(json.loads((check_root / "BUILD_INFO").read_text())["cuda"]["nvcc"])
    return nvcc.parents[2]


def _cache_of(root: Path) -> Path:
    return root.parents[1]   # <cache>/caffe/<key>


def _elf_files(root: Path) -> list[Path]:
    files = [p for p in (root / "build").rglob("*") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF"]
    return files + list((root / "python" / "caffe").glob("_caffe*.so"))


def test_check_build_defines_the_cudnn_layers(check_root):
    proc = subprocess.run([sys.executable, str(REPO / "scripts/gpu_build_check.py"), str(check_root)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cuDNN 9." in proc.stdout and "libcudnn.so.9" in proc.stdout
    for fn in ("Forward_gpu", "Backward_gpu"):
        assert f"caffe::CuDNNConvolutionLayer<float>::{fn}(" in proc.stdout, proc.stdout


def test_the_symbol_check_refuses_a_build_without_cudnn():
    from transfer.caffe.env import caffe_root  # the CPU build: no cuDNN layers, no libcudnn
    proc = subprocess.run([sys.executable, str(REPO / "scripts/gpu_build_check.py"), str(caffe_root())],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "the build has no cuDNN" in proc.stderr and "CuDNNConvolutionLayer<float>::Forward_gpu" in proc.stderr


def _rpaths(path: Path) -> tuple[list[str], list[str]]:
    text = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, timeout=60).stdout
    rpath = re.findall(r"\(RPATH\)\s+Library rpath: \[([^\]]*)\]", text)
    runpath = re.findall(r"\(RUNPATH\)\s+Library runpath: \[([^\]]*)\]", text)
    return [d for r in rpath for d in r.split(":")], runpath


def test_no_binary_names_the_cache_or_the_temporary_tree(check_root):
    from transfer.caffe.env import caffe_root
    for root in (check_root, caffe_root()):
        cache = str(_cache_of(root).resolve())
        for f in _elf_files(root):
            rpath, runpath = _rpaths(f)
            assert not runpath, f"{f}: RUNPATH {runpath} (LD_LIBRARY_PATH would come first)"
            assert rpath and rpath[0].startswith("$ORIGIN"), f"{f}: rpath {rpath}"
            assert not [d for d in rpath if cache in d or ".partial" in d], f"{f}: rpath {rpath}"
            data = f.read_bytes()
            assert b".partial" not in data and cache.encode() not in data, f"{f} names {cache}"


def _in_moved_cache(cache: Path, script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `script` (sh) in a mount namespace where `cache` is seen at $MOVED and its own path is empty."""
    moved = tmp_path / "moved-cache"
    moved.mkdir()
    if not shutil.which("unshare"):
        pytest.skip("no unshare here: the moved-cache test needs a mount namespace")
    wrapper = (f'mount --bind "{cache}" "{moved}" && mount -t tmpfs none "{cache}" && '
               f'[ -z "$(ls -A "{cache}")" ] && MOVED="{moved}" && {script}')
    # caffe's INFO lines on stderr, whatever an earlier pycaffe import in this process set
    env = {k: v for k, v in os.environ.items() if k != "GLOG_minloglevel"} | {"GLOG_logtostderr": "1"}
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", wrapper], capture_output=True, text=True, timeout=600,
                          env=env)
    if proc.returncode != 0 and "unshare" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip(f"mount namespaces are not permitted here: {proc.stderr.strip()}")
    return proc


def test_a_moved_cache_still_runs(check_root, tmp_path):
    cache = _cache_of(check_root).resolve()
    rel = check_root.resolve().relative_to(cache)
    script = (f'ldd "$MOVED/{rel}/build/tools/caffe" && "$MOVED/{rel}/build/tools/caffe" --version')
    proc = _in_moved_cache(cache, script, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not found" not in proc.stdout, proc.stdout
    assert "caffe version" in proc.stdout + proc.stderr
    cudnn = [ln for ln in proc.stdout.splitlines() if "libcudnn.so.9 =>" in ln]
    assert cudnn and str(tmp_path / "moved-cache") in cudnn[0], proc.stdout


def test_a_copied_cpu_build_trains_a_tiny_net_with_the_original_gone(tmp_path):
    from transfer.caffe.env import caffe_root
    root = caffe_root().resolve()
    copy = tmp_path / "copy" / root.name
    shutil.copytree(root, copy, symlinks=True)
    net = tmp_path / "tiny.prototxt"
    net.write_text(gpu.TINY_NET)
    script = (f'"{copy}/build/tools/caffe" time -model "{net}" -iterations 2 && '
              f'"{sys.executable}" -c "import sys; sys.path.insert(0, \'{copy}/python\'); import caffe; '
              f'print(\'pycaffe from\', caffe.__file__)"')
    proc = _in_moved_cache(_cache_of(root), script, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Average Forward-Backward" in out and f"pycaffe from {copy}/python" in out


def _decoys(tmp_path: Path) -> Path:
    d = tmp_path / "decoys"
    d.mkdir()
    src = tmp_path / "decoy.c"
    src.write_text("int decoy_library = 1;\n")
    for name in DECOYS:
        subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{name}", "-o", str(d / name), str(src)],
                       check=True, timeout=120)
    return d


PROBE = """
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
for fn in ("cudnnCreateTensorDescriptor", "cudnnCreateFilterDescriptor", "cudnnCreateConvolutionDescriptor"):
    h = ctypes.c_void_p()
    assert getattr(lib, fn)(ctypes.byref(h)) == 0, fn   # no GPU needed; loads cuDNN's sub-libraries
h = ctypes.c_void_p()
print("cudnnCreate without a GPU:", lib.cudnnCreate(ctypes.byref(h)))
"""


def test_cudnn_and_cuda_libraries_come_from_the_build_whatever_ld_library_path(check_root, toolkit, tmp_path):
    decoys = _decoys(tmp_path)
    env = {**os.environ, "LD_LIBRARY_PATH": str(decoys), "LD_DEBUG": "libs", "GLOG_minloglevel": "2"}
    runs = [[str(check_root / "build/tools/caffe"), "--version"],
            [sys.executable, "-c", PROBE, str(check_root / "build/lib/libcaffe.so")]]
    for cmd in runs:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
        loaded = re.findall(r"calling init: (\S+)", proc.stderr)
        ours = [p for p in loaded if re.search(r"/lib(cudnn|cublas|cudart|curand|nvrtc)", p)]
        assert not [p for p in loaded if p.startswith(str(decoys))], f"{cmd[0]} loaded a decoy: {loaded}"
        assert ours and all(Path(p).resolve().is_relative_to(toolkit.resolve()) for p in ours), ours
    subs = {Path(p).resolve().name for p in ours}
    assert {"libcudnn_ops.so.9", "libcudnn_cnn.so.9", "libcudnn_graph.so.9"} <= subs, subs


def test_without_the_rpath_a_decoy_would_stand_in(toolkit, tmp_path):
    """The control: cuDNN as the wheel ships it (RUNPATH, only .so.9 names) loads a decoy sub-library
    from LD_LIBRARY_PATH, which is what the build's toolkit layout prevents."""
    sys.path.insert(0, str(REPO / "scripts"))
    import elf_rpath  # noqa: PLC0415
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    real = toolkit / "cudnn" / "lib"
    shutil.copy2(real / "libcudnn.so.9", shipped / "libcudnn.so.9")
    assert elf_rpath.runpath_to_rpath(shipped / "libcudnn.so.9", back=True) == "RPATH -> RUNPATH"
    for lib in real.glob("libcudnn_*.so.9"):
        (shipped / lib.name).symlink_to(lib)
    env = {**os.environ, "LD_LIBRARY_PATH": str(_decoys(tmp_path)), "LD_DEBUG": "libs"}
    probe = ("import ctypes, sys; h = ctypes.c_void_p(); "
             "ctypes.CDLL(sys.argv[1]).cudnnCreateTensorDescriptor(ctypes.byref(h))")
    proc = subprocess.run([sys.executable, "-c", probe, str(shipped / "libcudnn.so.9")], capture_output=True,
                          text=True, timeout=300, env=env)
    assert re.search(r"calling init: \S+/decoys/libcudnn_ops\.so\.9\.13\.0", proc.stderr), proc.stderr[-2000:]


def test_the_toolkit_has_nvrtc_where_cudnn_looks(toolkit):
    pins = subprocess.run([str(REPO / "scripts/cuda-pypi.sh"), "--pins", "cudnn"], capture_output=True,
                          text=True, check=True).stdout.split()
    assert any(p.startswith("nvidia-cuda-nvrtc==") for p in pins), pins
    cudnn_lib = toolkit / "cudnn" / "lib"
    nvrtc = cudnn_lib / "libnvrtc.so.13"
    assert nvrtc.resolve().is_file() and nvrtc.resolve().parent == (toolkit / "cu13" / "lib").resolve()
    for name in ("libcudnn_ops.so.9.13.0", "libcudnn_cnn.so.9.13", "libcudnn_graph.so.9.13.0"):
        assert (cudnn_lib / name).resolve() == (cudnn_lib / name.split(".so.")[0]).with_suffix(".so.9").resolve()
    rpath, runpath = _rpaths(cudnn_lib / "libcudnn.so.9")
    assert rpath == ["$ORIGIN"] and not runpath, (rpath, runpath)
