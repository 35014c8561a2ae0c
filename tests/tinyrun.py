"""Shared by the training tests: throwaway copies of the tiny plan, their data, and one trained run.

A copy of transfer/plans/tiny.yaml gets absolute data, run and net-file directories in a temporary
directory (nothing is written into the checkout).
The data: the synthetic dataset of the tiny plan, through the real data stages (transfer.data.prepare).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from transfer import REPO
from transfer.plan.model import Plan
from transfer.plan.load import load_plan

sys.path.insert(0, str(REPO / "caffe"))
import apply_patches  # noqa: E402  (caffe/apply_patches.py: the build's patch step)

TINY = REPO / "transfer" / "plans" / "tiny.yaml"
_cache: dict[str, object] = {}


def caffe_available() -> bool:
    try:
        from transfer.caffe.env import caffe_binary, caffe_root
        caffe_binary()
        return (caffe_root() / "python" / "caffe" / "_caffe.so").exists() or \
            any((caffe_root() / "python" / "caffe").glob("_caffe*.so"))
    except Exception:  # noqa: BLE001
        return False


def write_plan_copy(root: Path, data_dir: Path, solver: dict | None = None,
                    experiments: dict | None = None, write_nets: bool = True, model: dict | None = None,
                    runs: Path | None = None, name: str = "plan.yaml",
                    datasets: dict | None = None) -> Plan:
    """A copy of the tiny plan under `root` (runs: `runs`, default root/runs), reading `data_dir`, with
    `solver`, `model` and `datasets` values changed; written as root/`name`; its net files written."""
    from transfer.plan.netfiles import write_plan
    config = yaml.safe_load(TINY.read_text())
    root.mkdir(parents=True, exist_ok=True)
    # Every directory of the copy lies under `root`: tests never write into the checkout.
    config.update(data_dir=str(data_dir), runs_dir=str(runs or root / "runs"),
                  split_dir=str(data_dir.parent / "synthetic"),
                  nets_dir=str(root / "prototxt"), solvers_dir=str(root / "solvers"))
    if solver:
        config["solver"] = {**config["solver"], **solver}
    if model:
        config["model"] = {**config["model"], **model}
    if datasets:
        config["datasets"] = {**config["datasets"], **datasets}
    if experiments is not None:
        config["experiments"] = experiments
    path = root / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    plan = load_plan(str(path))
    if write_nets:
        write_plan(plan)
    return plan


def shared_data(tmp_path_factory) -> Path:
    """The tiny plan's datasets, made once per session by the real data stages
    (synthetic images, splits, file lists, LMDBs, means): returns their data directory."""
    if "data" not in _cache:
        from transfer.data.prepare import prepare_plan_data
        root = tmp_path_factory.mktemp("tinydata")
        prepare_plan_data(write_plan_copy(root, root / "data", write_nets=False), jobs=2)
        _cache["data"] = root / "data"
    return _cache["data"]


# ---------------------------------------------------------------------------- running the CLI

def transfer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "transfer", *args]


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(transfer_cmd(*args), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def trained_plan(tmp_path_factory) -> tuple[Plan, subprocess.CompletedProcess]:
    """The whole tiny plan trained once per session with `transfer run --cpu --jobs 2`."""
    if "trained" not in _cache:
        data = shared_data(tmp_path_factory)
        plan = write_plan_copy(tmp_path_factory.mktemp("tinyplan"), data)
        res = run_cli("run", "--plan", str(plan.path), "--cpu", "--jobs", "2", timeout=400)
        _cache["trained"] = (plan, res)
    return _cache["trained"]


def data_batches(net_path: Path, times: int = 1, phase: str = "TEST",
                 seed: int | None = None) -> list:
    """(data, label) arrays of `times` forward passes of a Data-layer net through pycaffe on the CPU."""
    from transfer.caffe.env import import_caffe
    caffe = import_caffe()
    caffe.set_mode_cpu()
    if seed is not None:
        caffe.set_random_seed(seed)
    net = caffe.Net(str(net_path), getattr(caffe, phase))
    out = []
    for _ in range(times):
        net.forward()
        out.append((net.blobs["data"].data.copy(), net.blobs["label"].data.copy()))
    return out


def children_of(pid: int) -> list[int]:
    """The direct children of process `pid` (Linux /proc)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


CACHE = Path(os.environ.get("TRANSFER_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
             / "transfer")
SDIST = CACHE / "sources" / "brocolli-caffe-9.0.2.tar.gz"


def sdist_tree(root: Path) -> Path:
    """The pinned Caffe sdist unpacked under `root` (what caffe/patches is made against); the test is
    skipped where `make caffe` has not downloaded it."""
    import tarfile
    import pytest
    if not SDIST.is_file():
        pytest.skip(f"the Caffe sdist is not in the cache ({SDIST}); `make caffe` downloads it")
    with tarfile.open(SDIST) as tar:
        tar.extractall(root, filter="data")
    (tree,) = root.iterdir()
    return tree


def patched_sdist(root: Path) -> tuple[Path, Path, list[dict]]:
    """(the pinned sdist, a copy of it with the patch series applied, the series' records), both under
    `root`: what `make caffe` compiles, without compiling it."""
    sdist = sdist_tree(root / "sdist")
    tree = root / "patched"
    shutil.copytree(sdist, tree, symlinks=True)
    return sdist, tree, apply_patches.run(tree, foreign=False)


def data_net(path: Path, source: Path, batch: int, transform: str = "", **data_param: object) -> Path:
    """A net of one Data layer reading the LMDB `source` (`transform`: the transform_param fields,
    e.g. 'crop_size: 12'; `data_param`: more data_param fields, strings quoted), written to `path`."""
    def text(v: object) -> str:
        return f'"{v}"' if isinstance(v, (str, Path)) else str(v)
    extra = "".join(f"    {k}: {text(v)}\n" for k, v in data_param.items())
    param = f"  transform_param {{ {transform} }}\n" if transform else ""
    path.write_text(f'''name: "read"
layer {{
  name: "data" type: "Data" top: "data" top: "label"
{param}  data_param {{
    source: "{source}"
    batch_size: {batch}
    backend: LMDB
{extra}  }}
}}
''')
    return path
