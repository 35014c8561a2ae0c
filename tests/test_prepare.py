"""`transfer prepare`: a plan's datasets through the real stages, reduced sets included."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import tinyrun  # noqa: E402

from transfer.core.errors import TransferError  # noqa: E402
from transfer.data.prepare import prepare_plan_data  # noqa: E402

pytestmark = pytest.mark.requires_caffe


def test_reduced_sets_and_the_whole_set_are_shared_not_copied(tmp_path_factory):
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
    prepare_plan_data(plan, jobs=2)
    d = root / "data"
    # 40 a class is every training image: the "reduced" database is the whole one, linked
    assert (d / "reduced0040" / "train_lmdb").is_symlink()
    assert os.readlink(d / "reduced0040" / "train_lmdb") == "../all/train_lmdb"
    assert (d / "reduced0040" / "mean.binaryproto").resolve() == (d / "all" / "mean.binaryproto").resolve()
    small = json.loads((d / "reduced0010" / "train_lmdb" / "manifest.json").read_text())
    assert not (d / "reduced0010" / "train_lmdb").is_symlink() and small["count"] == 8 * 10
    assert (d / "reduced0010" / "mean.binaryproto").is_file()
    assert not (d / "reduced0010" / "val_lmdb").exists()  # reduced nets validate on the whole val set
    assert {n.files.val_data for n in plan.nets} == {d / "all" / "val_lmdb"} == {plan.dataset("all").val}


def test_a_plan_without_images_says_what_to_give():
    with pytest.raises(TransferError, match="give --imagenet DIR .*, or --train-root --train-list --val-root --val-list"):
        prepare_plan_data(tinyrun.load_plan("paper"))
