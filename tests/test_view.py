"""A derived data set read as a view: the project's Caffe Data layer reads the whole set's LMDB through a
label map (label_map_file) and a key list (key_file) and yields exactly the Datums of the relabelled copy."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from transfer import REPO
from transfer.data import synthetic
from transfer.data.build import build
from transfer.data.derive import relabel
from transfer.data.lmdb_store import iter_items, open_read, read_manifest
from transfer.plan.load import PLAN_DIR, load_plan

import tinyrun  # noqa: E402

pytestmark = pytest.mark.requires_caffe
MAP = {0: 0, 2: 1, 3: 2, 5: 1}      # drops classes 1 and 4, merges 2 and 5


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("view")
    syn = synthetic.make_synthetic(root / "syn", num_classes=6, train_per_class=8, val_per_class=1, size=16)
    return build(str(syn / "train.txt"), str(syn), str(root / "whole"), size=16, shuffle=True, jobs=1)


def test_view_yields_exactly_the_relabelled_copy(whole, tmp_path):
    copy = relabel(str(whole), MAP, str(tmp_path / "copy"))
    count = read_manifest(copy)["count"]
    assert count == 4 * 8
    labels = tmp_path / "labels.txt"
    labels.write_text("# old new\n" + "".join(f"{o} {n}\n" for o, n in MAP.items()))
    view = tinyrun.data_batches(tinyrun.data_net(tmp_path / "view.prototxt", whole, count, label_map_file=str(labels)), times=2)
    (cdata, clabel), = tinyrun.data_batches(tinyrun.data_net(tmp_path / "copy.prototxt", copy, count))
    vdata, vlabel = view[0]
    # the same Datums, labels and order as the copy (relabel keeps the whole set's order)
    assert np.array_equal(vdata, cdata) and np.array_equal(vlabel, clabel)
    assert Counter(vlabel.astype(int).tolist()) == {0: 8, 1: 16, 2: 8}
    # the next epoch starts over the same way
    assert np.array_equal(view[1][0], cdata) and np.array_equal(view[1][1], clabel)


def test_key_file_selects_records_with_their_labels(whole, tmp_path):
    env = open_read(whole)
    from transfer.caffe.env import caffe_pb2
    from transfer.data.images import datum_array
    pb2 = caffe_pb2()
    items = [(k, datum_array(pb2, v)) for k, v in iter_items(env)]
    env.close()
    chosen = items[::3]
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(k.decode() + "\n" for k, _ in chosen))
    (data, label), = tinyrun.data_batches(tinyrun.data_net(tmp_path / "k.prototxt", whole, len(chosen), key_file=str(keys)))
    assert label.astype(int).tolist() == [lb for _, (_, lb) in chosen]
    assert all(np.array_equal(data[i], arr.astype(np.float32)) for i, (_, (arr, _)) in enumerate(chosen))


def test_bad_label_map_stops_caffe_naming_the_line(whole, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("0 0\n2 x\n")
    net = tinyrun.data_net(tmp_path / "bad.prototxt", whole, 4, label_map_file=str(labels))
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import tinyrun; tinyrun.data_batches({str(net)!r})"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and f"{labels}:2: expected 'old new'" in res.stderr


def test_a_plan_with_views_trains_through_the_whole_sets_lmdb(tmp_path):
    c = yaml.safe_load((PLAN_DIR / "huh-small.yaml").read_text())
    c.update(name="huh-view", data_dir=str(tmp_path / "data"), runs_dir=str(tmp_path / "runs"),
             split_dir=str(tmp_path / "synthetic"), nets_dir=str(tmp_path / "prototxt"),
             solvers_dir=str(tmp_path / "solvers"))
    c["synthetic"] = {"classes": 8, "train_per_class": 12, "val_per_class": 4, "size": 64, "seed": 1}
    c["model"].update(train_batch=16, test_batch=16)
    c["solver"].update(max_iter=4, test_interval=2, test_iter=2, snapshot=4, display=1)
    c["datasets"] = {"all": 8, "bottomup-2": 2}
    c["experiments"] = {"huh2016": {"label_sets": ["bottomup-2"], "views": True}}
    del c["targets"], c["schedules"]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(c))
    plan = load_plan(str(path))
    net = plan.net("base-bottomup-2")
    assert net.files.train_data == tmp_path / "data/all/train_lmdb"
    assert net.files.train_labels == tmp_path / "data/bottomup-2/labels.txt"
    from transfer.data.prepare import prepare_plan_data
    prepare_plan_data(plan, jobs=1)
    assert not (tmp_path / "data/bottomup-2/train_lmdb").exists()     # no copy
    assert (tmp_path / "data/bottomup-2/mean.binaryproto").resolve() == (tmp_path / "data/all/mean.binaryproto")
    res = tinyrun.run_cli("run", "--plan", str(path), "--cpu", "--only", "base-bottomup-2", timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    log = "".join(p.read_text() for p in net.run.log_files())
    # the Data layer read the whole set's LMDBs through the 8-class -> 2-label map, train and validation
    assert f"view of {tmp_path}/data/all/train_lmdb: 8 mapped labels, 0 keys" in log
    assert f"view of {tmp_path}/data/all/val_lmdb: 8 mapped labels, 0 keys" in log
    assert "Test net output #0: accuracy" in log
