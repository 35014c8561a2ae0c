"""Shared by the training tests: throwaway copies of the tiny plan, their data, and one trained run.

A copy of transfer/plans/tiny.yaml gets absolute data/run directories in a temporary directory,
and a name that puts its net files there too (nothing is written into the checkout).
The data: small raw-Datum LMDBs (3x64x64, class-dependent colour blobs plus noise, so a net can
learn) and their mean, written here directly so the tests need nothing but Caffe.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import yaml

from transfer import REPO
from transfer.caffe_env import caffe_pb2
from transfer.plan import Plan, load_plan

TINY = REPO / "transfer" / "plans" / "tiny.yaml"
_cache: dict[str, object] = {}


def caffe_available() -> bool:
    try:
        from transfer.caffe_env import caffe_binary, caffe_root
        caffe_binary()
        return (caffe_root() / "python" / "caffe" / "_caffe.so").exists() or \
            any((caffe_root() / "python" / "caffe").glob("_caffe*.so"))
    except Exception:  # noqa: BLE001
        return False


def write_plan_copy(root: Path, data_dir: Path, solver: dict | None = None,
                    experiments: dict | None = None) -> Plan:
    """A copy of the tiny plan under `root` (runs), reading `data_dir`; net files written."""
    from transfer.nets import write_plan
    config = yaml.safe_load(TINY.read_text())
    root.mkdir(parents=True, exist_ok=True)
    # Every directory of the copy lies under `root`: tests never write into the checkout.
    config.update(data_dir=str(data_dir), runs_dir=str(root / "runs"), split_dir=str(root / "synthetic"),
                  nets_dir=str(root / "prototxt"), solvers_dir=str(root / "solvers"))
    if solver:
        config["solver"] = {**config["solver"], **solver}
    if experiments is not None:
        config["experiments"] = experiments
    path = root / "plan.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    plan = load_plan(str(path))
    write_plan(plan)
    return plan




# ---------------------------------------------------------------------------- data

def _images(n_classes: int, per_class: int, size: int, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    out = []
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(n_classes):
        colour = np.array([(37 * c) % 256, (91 * c + 60) % 256, (151 * c + 120) % 256], float)
        for _ in range(per_class):
            cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 5) ** 2))
            img = 128 + (colour[:, None, None] - 128) * blob + rng.normal(0, 20, (3, size, size))
            out.append((np.clip(img, 0, 255).astype(np.uint8), c))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _write_lmdb(path: Path, items: list[tuple[np.ndarray, int]]) -> None:
    pb = caffe_pb2()
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for i, (img, label) in enumerate(items):
            d = pb.Datum(channels=img.shape[0], height=img.shape[1], width=img.shape[2],
                         data=img.tobytes(), label=label, encoded=False)
            txn.put(f"{i:08d}".encode(), d.SerializeToString())
    env.close()


def _write_mean(path: Path, items: list[tuple[np.ndarray, int]]) -> None:
    pb = caffe_pb2()
    mean = np.mean([img.astype(np.float64) for img, _ in items], axis=0).astype(np.float32)
    c, h, w = mean.shape
    blob = pb.BlobProto(num=1, channels=c, height=h, width=w)
    blob.data.extend(mean.ravel().tolist())
    path.write_bytes(blob.SerializeToString())


def make_data(data_dir: Path, plan: Plan) -> Path:
    """LMDBs and means for every dataset of the plan, at the paths its nets read."""
    cfg = plan.config["synthetic"]
    size = int(plan.config["model"]["image_size"])
    rng = np.random.default_rng(cfg.get("seed", 1))
    for ds, classes in plan.datasets().items():
        d = data_dir / ds
        if (d / "mean.binaryproto").is_file():
            continue
        train = _images(classes, cfg["train_per_class"], size, rng)
        val = _images(classes, cfg["val_per_class"], size, rng)
        _write_lmdb(d / "train_lmdb", train)
        _write_lmdb(d / "val_lmdb", val)
        _write_mean(d / "mean.binaryproto", train)
    return data_dir


def shared_data(tmp_path_factory) -> Path:
    if "data" not in _cache:
        root = tmp_path_factory.mktemp("tinydata")
        plan = load_plan(str(TINY))
        _cache["data"] = make_data(root / "data", plan)
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
