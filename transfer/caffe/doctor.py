"""`transfer doctor`: which Caffe is in use, and does everything the pipeline needs work?

Each check runs the real thing (the `caffe` binary, `import caffe` in a subprocess so that a
crash in _caffe.so is reported rather than fatal) and says how to fix what fails.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import env as caffe_env, gpu
from ..core.errors import Exit, TransferError

# Layer types the paper's nets use (Krizhevsky-style ImageNet net trained from LMDB).
PAPER_LAYERS = ["Data", "Convolution", "ReLU", "Pooling", "LRN", "InnerProduct", "Dropout",
                "SoftmaxWithLoss", "Accuracy"]
# import name -> pip name (for the fix hint)
PY_PACKAGES = {"numpy": "numpy", "google.protobuf": "protobuf", "lmdb": "lmdb", "PIL": "pillow",
               "matplotlib": "matplotlib", "yaml": "PyYAML", "cv2": "opencv-python-headless"}
TIMEOUT = 120
FIX_BUILD = "run `make caffe`, or point CAFFE_ROOT at a working Caffe build"
FIX_VENV = "run `make venv` (installs requirements.txt into .venv)"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False   # not run here (e.g. no GPU visible); not a problem


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "GLOG_minloglevel": "2", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=full_env)


def _why(proc: subprocess.CompletedProcess) -> str:
    """Last meaningful line of a failed process, or its signal."""
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    tail = lines[-1].strip() if lines else "no output"
    if proc.returncode < 0:
        return f"killed by signal {-proc.returncode} ({tail})"
    return f"exit {proc.returncode}: {tail}"


def root_info(root: Path) -> dict:
    """BUILD_INFO written by scripts/build-caffe.sh; {'source': 'external'} for other builds."""
    path = root / "BUILD_INFO"
    if not path.is_file():
        return {"source": "external"}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TransferError(f"{path} is not valid JSON ({exc}); rebuild with `make caffe`") from exc
    if not isinstance(info, dict):
        raise TransferError(f"{path} should hold a JSON object; rebuild with `make caffe`")
    return info


def patch_lines(info: dict) -> list[str]:
    """The Caffe patch series BUILD_INFO records (caffe/patches): one line per patch, applied or not."""
    record = info.get("patches")
    if not isinstance(record, dict) or not isinstance(record.get("series"), list):
        return ["patches    : none recorded (not built by scripts/build-caffe.sh from caffe/patches)"]
    series = record["series"]
    applied = sum(bool(p.get("applied")) for p in series)
    lines = [f"patches    : {applied} of {len(series)} applied ({record.get('mode', '?')} tree)"]
    for p in series:
        state = "applied" if p.get("applied") else f"NOT APPLIED: {p.get('reason', '?')}"
        lines.append(f"  {p.get('name', '?')}  sha256 {str(p.get('sha256', '?'))[:12]}  {state}")
    return lines


def check_binary() -> Check:
    try:
        exe = caffe_env.caffe_binary()
    except TransferError as exc:
        return Check("caffe binary", False, str(exc), FIX_BUILD)
    try:
        proc = _run([str(exe), "--version"])
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("caffe binary", False, f"{exe} does not run: {exc}", FIX_BUILD)
    if proc.returncode != 0:
        return Check("caffe binary", False, f"`{exe} --version` failed, {_why(proc)}", FIX_BUILD)
    version = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["?"]
    return Check("caffe binary", True, f"{exe} ({version[0]})")


def check_tools() -> Check:
    missing = []
    for name in ("upgrade_net_proto_text", "upgrade_solver_proto_text"):
        try:
            caffe_env.tool(name)
        except TransferError:
            missing.append(name)
    if missing:
        return Check("tools", False, f"missing {', '.join(missing)}", FIX_BUILD)
    return Check("tools", True, "upgrade_net_proto_text, upgrade_solver_proto_text")


# Run in a fresh interpreter: imports pycaffe from ROOT/python first, reports JSON.
_PYCAFFE_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import caffe
print(json.dumps({"file": caffe.__file__, "layers": sorted(caffe.layer_type_list())}))
"""


def check_pycaffe(root: Path) -> tuple[Check, Check]:
    """(pycaffe import, paper layers present)."""
    python_dir = root / "python"
    try:
        proc = _run([sys.executable, "-c", _PYCAFFE_PROBE, str(python_dir)])
    except (OSError, subprocess.SubprocessError) as exc:
        proc = None
        why = str(exc)
    if proc is None or proc.returncode != 0:
        why = _why(proc) if proc is not None else why
        fail = Check("pycaffe", False, f"`import caffe` from {python_dir} failed, {why}", FIX_BUILD)
        return fail, Check("layers", False, "not checked (pycaffe does not import)", FIX_BUILD)
    try:
        found = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        bad = Check("pycaffe", False, f"unexpected probe output: {proc.stdout[-200:]!r}", FIX_BUILD)
        return bad, Check("layers", False, "not checked", FIX_BUILD)
    where = Path(found["file"]).resolve()
    imported = Check("pycaffe", True, f"imports from {where.parent}")
    if python_dir.resolve() not in where.parents:
        imported = Check("pycaffe", False, f"`import caffe` found {where}, not the one under {python_dir}",
                         "remove the other pycaffe from PYTHONPATH / site-packages")
    missing = [name for name in PAPER_LAYERS if name not in found["layers"]]
    if missing:
        layers = Check("layers", False, f"this Caffe lacks {', '.join(missing)}",
                       "use a Caffe with the standard BVLC layers (make caffe builds one)")
    else:
        layers = Check("layers", True, f"{len(found['layers'])} types, incl. {' '.join(PAPER_LAYERS)}")
    return imported, layers


_PACKAGES_PROBE = """
import importlib, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        mod = importlib.import_module(name)
        out[name] = [True, str(getattr(mod, "__version__", "?"))]
    except Exception as exc:
        out[name] = [False, f"{type(exc).__name__}: {exc}"]
print(json.dumps(out))
"""


def check_packages() -> Check:
    try:
        proc = _run([sys.executable, "-c", _PACKAGES_PROBE, *PY_PACKAGES])
        found = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        return Check("python packages", False, f"import probe failed: {exc}", FIX_VENV)
    bad = [f"{name} ({found[name][1]})" for name in PY_PACKAGES if not found.get(name, [False])[0]]
    if bad:
        pips = " ".join(PY_PACKAGES[n] for n in PY_PACKAGES if not found.get(n, [False])[0])
        return Check("python packages", False, "cannot import " + "; ".join(bad),
                     f"{FIX_VENV} (missing: {pips})")
    return Check("python packages", True, ", ".join(f"{n} {found[n][1]}" for n in PY_PACKAGES))


def check_gpu(build: gpu.Build) -> tuple[list[str], Check]:
    """(lines about the node's GPUs, the tiny forward/backward on GPU 0 or why it is skipped)."""
    devices, why = gpu.visible_gpus()
    lines = [f"gpus       : {d.index}: {d.name}, driver {d.driver}, {d.memory_mib} MiB" for d in devices]
    if devices:
        lines.append(f"driver     : supports CUDA {gpu.driver_cuda() or '?'}")
    if not devices:
        return lines, Check("gpu run", True, f"skipped: no GPU visible ({why})", skipped=True)
    if build.gpu is False:
        return lines, Check("gpu run", True, "skipped: this Caffe is a CPU-only build; "
                            "to use the GPU, " + gpu.FIX_GPU_BUILD, skipped=True)
    problem = gpu.driver_problem(build, devices[0].driver, gpu.driver_cuda())
    if problem:
        return lines, Check("driver", False, problem[0], problem[1])
    run = gpu.tiny_forward_backward(0)
    return lines, Check("gpu run", run.ok, f"{run.where}: {run.detail}", FIX_BUILD if not run.ok else "")


def diagnose() -> tuple[list[str], list[Check]]:
    """Header lines describing the Caffe in use, and the checks."""
    try:
        root = caffe_env.caffe_root()
    except TransferError as exc:
        return [], [Check("caffe root", False, str(exc), FIX_BUILD), check_packages()]
    origin = "CAFFE_ROOT" if os.environ.get("CAFFE_ROOT") else f"{Path(sys.prefix) / 'caffe-root'}"
    header = [f"caffe root : {root} (from {origin})"]
    if not root.is_dir():
        return header, [Check("caffe root", False, f"{root} is not a directory", FIX_BUILD), check_packages()]
    try:
        info = root_info(root)
    except TransferError as exc:
        return header, [Check("build info", False, str(exc), FIX_BUILD), check_packages()]
    source = str(info.get("source", "?"))
    if info.get("sha256"):
        source += f" (sha256 {str(info['sha256'])[:12]}..., built {info.get('date', '?')})"
    try:
        build = gpu.build_of(root)
    except TransferError as exc:
        return header, [Check("build info", False, str(exc), FIX_BUILD), check_packages()]
    header += [f"source     : {source}", f"mode       : {build.describe()}", *patch_lines(info)]
    binary = check_binary()
    gpu_lines, gpu_run = check_gpu(build) if binary.ok else ([], Check("gpu run", True, "skipped: no caffe binary",
                                                                        skipped=True))
    return header + gpu_lines, [binary, check_tools(), *check_pycaffe(root), check_packages(), gpu_run]


def run(args: argparse.Namespace) -> int:
    header, checks = diagnose()
    for line in header:
        print(line)
    for c in checks:
        print(f"{'skip' if c.skipped else 'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
        if not c.ok and c.fix:
            print(f"     fix: {c.fix}")
    problems = sum(not c.ok for c in checks)
    print("all checks passed" if not problems else f"{problems} problem(s) found")
    return Exit.OK if not problems else Exit.FAILED


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="check the Caffe build, pycaffe and Python packages",
                              description=__doc__.splitlines()[0])
    p.set_defaults(func=run)
