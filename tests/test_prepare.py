"""`transfer prepare`: a plan's datasets through the real stages, reduced sets included."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tinyrun  # noqa: E402

from transfer.core.errors import TransferError  # noqa: E402
from transfer.data.derived_sets import disk_estimate  # noqa: E402
from transfer.data.prepare import prepare_plan_data  # noqa: E402

pytestmark = pytest.mark.requires_caffe


def test_reduced_sets_and_the_whole_set_are_shared_not_copied(tmp_path_factory, caplog):
    data = tinyrun.shared_data(tmp_path_factory)
    root = tmp_path_factory.mktemp("reduced")
    # The tiny plan's images and splits (shared), its own databases, and two reduced-data nets.
    text = tinyrun.TINY.read_text().split("datasets:")[0] + (
        "datasets:\n  all: 8\nexperiments:\n  reduced:\n    counts: [40, 10]\n    val_dataset: all\n")
    text = text.replace("data_dir: work/tiny/data", f"data_dir: {root / 'data'}") \
               .replace("runs_dir: work/tiny/runs", f"runs_dir: {root / 'runs'}") \
               .replace("split_dir: work/tiny/synthetic", f"split_dir: {data.parent / 'synthetic'}")
    text += f"nets_dir: {root / 'prototxt'}\nsolvers_dir: {root / 'solvers'}\n"
    (root / "plan.yaml").write_text(text)
    plan = tinyrun.load_plan(str(root / "plan.yaml"))
    assert [n.name for n in plan.nets] == ["reduced-0040", "reduced-0010"]
    with caplog.at_level(logging.INFO, logger="transfer"):
        prepare_plan_data(plan, jobs=2)
    d = root / "data"
    # 40 a class is every training image: the "reduced" database is the whole one, linked, and said so
    assert (d / "reduced0040" / "train_lmdb").is_symlink()
    assert os.readlink(d / "reduced0040" / "train_lmdb") == "../all/train_lmdb"
    assert (d / "reduced0040" / "mean.binaryproto").resolve() == (d / "all" / "mean.binaryproto").resolve()
    small = json.loads((d / "reduced0010" / "train_lmdb" / "manifest.json").read_text())
    assert not (d / "reduced0010" / "train_lmdb").is_symlink() and small["count"] == 8 * 10
    assert (d / "reduced0010" / "mean.binaryproto").is_file()
    assert not (d / "reduced0010" / "val_lmdb").exists()  # reduced nets validate on the whole val set
    assert {n.files.val_data for n in plan.nets} == {d / "all" / "val_lmdb"} == {plan.dataset("all").val}
    assert "dataset reduced0040: its training list is the whole set's, image for image" in caplog.text
    assert "linked to all (their list is the whole set's, no copy): reduced0040" in caplog.text
    # the estimate counts the link as no copy: it is what was written (it used to count reduced0040 again)
    written = [d / "all" / "train_lmdb", d / "all" / "val_lmdb", d / "reduced0010" / "train_lmdb"]
    cut = [s for s in plan.used_datasets() if s.cut_from_list]
    assert sorted(s.name for s in cut) == ["reduced0010", "reduced0040"]
    est = disk_estimate(plan, Path(data.parent / "synthetic" / "train.txt"), Path(data.parent / "synthetic" / "val.txt"),
                        d / "lists", cut, [], [], {n.val_dataset for n in plan.nets})
    assert est.images == sum(json.loads((db / "manifest.json").read_text())["count"] for db in written)
    on_disk = sum((db / "data.mdb").stat().st_blocks * 512 for db in written)
    assert 0.9 < est.total / on_disk < 1.15, (est.total, on_disk)
    assert est.linked == ("reduced0040",) and est.to_write == 0


def test_a_plan_without_images_says_what_to_give():
    with pytest.raises(TransferError, match="give --imagenet DIR .*, or --train-root --train-list --val-root --val-list"):
        prepare_plan_data(tinyrun.load_plan("paper"))


def test_damaged_manifest_or_mean_is_never_up_to_date(tmp_path):
    """A mean emptied or cut short used to leave `transfer prepare` saying everything was up to date (only
    training's preflight noticed); a manifest cut short ended prepare and train in a JSONDecodeError."""
    from transfer.data.means import read_mean

    plan = tinyrun.write_plan_copy(tmp_path, tmp_path / "data", write_nets=False)
    prepare_plan_data(plan, jobs=2)
    d = tmp_path / "data"
    mean = d / "half0A" / "mean.binaryproto"
    good = read_mean(str(mean), (3, 64, 64))
    mean.write_bytes(b"")
    (d / "half0B" / "mean.binaryproto").write_bytes(mean.read_bytes()[:40])
    res = tinyrun.run_cli("prepare", "--plan", str(plan.path), "--jobs", "1")
    assert res.returncode == 0, res.stderr
    assert f"{mean}: empty (0 bytes); making it again" in res.stderr
    assert f"{d / 'half0B' / 'mean.binaryproto'}: empty (0 bytes); making it again" in res.stderr
    assert (read_mean(str(mean), (3, 64, 64)) == good).all()

    manifest = d / "half0B" / "train_lmdb" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:100])
    res = tinyrun.run_cli("prepare", "--plan", str(plan.path), "--jobs", "1")
    assert res.returncode == 2 and f"{manifest}: the database's manifest is damaged or cut short" in res.stderr
    assert f"{d / 'half0B' / 'train_lmdb'} is up to date" not in res.stderr and "Traceback" not in res.stderr
    net = plan.net("base-half0B")
    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--cpu")
    assert res.returncode == 2 and "not ready to train" in res.stderr and str(manifest) in res.stderr
    assert not net.run.is_done() and not net.run.log_files()

    # a mean of another image size than the net's data: training refuses it, naming both
    manifest.write_bytes((d / "half0A" / "train_lmdb" / "manifest.json").read_bytes())   # a readable one again
    from transfer.caffe.env import caffe_pb2
    blob = caffe_pb2().BlobProto(num=1, channels=3, height=32, width=32)
    blob.data.extend([100.0] * 3 * 32 * 32)
    (d / "half0B" / "mean.binaryproto").write_bytes(blob.SerializeToString())
    res = tinyrun.run_cli("train", net.name, "--plan", str(plan.path), "--cpu")
    assert res.returncode == 2 and "a mean of 3x32x32, but the database's images are 3x64x64" in res.stderr
    assert not net.run.is_done()


def _userns() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _userns(), reason="needs a user namespace (unshare -rm) to mount a small tmpfs")
def test_prepare_refuses_a_plan_the_disk_cannot_hold(tmp_path_factory, tmp_path):
    """The tiny plan's databases (800 images of 64x64, some 13 MiB) onto a 2 MiB disk: refused with the
    numbers before any database is written (a build used to start and fill the disk)."""
    data = tinyrun.shared_data(tmp_path_factory)
    disk = tmp_path / "disk"
    disk.mkdir()
    text = tinyrun.TINY.read_text().replace("data_dir: work/tiny/data", f"data_dir: {disk / 'data'}") \
        .replace("runs_dir: work/tiny/runs", f"runs_dir: {tmp_path / 'runs'}") \
        .replace("split_dir: work/tiny/synthetic", f"split_dir: {data.parent / 'synthetic'}")
    text += f"nets_dir: {tmp_path / 'prototxt'}\nsolvers_dir: {tmp_path / 'solvers'}\n"
    (tmp_path / "plan.yaml").write_text(text)
    script = (f"mount -t tmpfs -o size=2m tmpfs {disk} && cd {tinyrun.REPO} && exec {sys.executable} -m transfer "
              f"prepare --plan {tmp_path / 'plan.yaml'} --jobs 1")
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 74, res.stderr
    assert re.search(rf"plan tiny's databases need about (1\d\.\d) MiB more under {disk / 'data'} \(800 images, "
                     rf"about \1 MiB\), and {disk / 'data'} has 2\.0 MiB free", res.stderr), res.stderr
    assert "Traceback" not in res.stderr and "train_lmdb" not in res.stderr   # no database started
    assert "whole-set LMDBs" not in res.stderr
