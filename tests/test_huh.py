"""Huh et al. 2016 plans: pre-training nets per label set and budget, the readout and target-transfer nets,
target datasets from folders, the report's tables and figures, and (slow) a tiny plan trained end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from google.protobuf import text_format
from PIL import Image

from transfer.results import huh_figures, huh_markdown, huh_tables as huh_report, published, verdicts
from transfer.data import targets
from transfer.caffe.env import caffe_pb2
from transfer.core.errors import TransferError
from transfer.plan.netfiles import net_files
from transfer.plan import load as plan_mod
from transfer.plan.load import PLAN_DIR, load_plan

import tinyrun  # noqa: E402


def load(tmp_path: Path, config: dict):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load_plan(str(path))


def small_config() -> dict:
    return yaml.safe_load((PLAN_DIR / "huh-small.yaml").read_text())


def test_paper_scale_plan_nets_solvers_and_layers():
    plan = load_plan("huh2016")
    pre = [n for n in plan.nets if n.family == "huh2016" and n.treatment == "base"]
    assert len(pre) == 14 and len([n for n in plan.nets if n.treatment == "readout"]) == 13
    assert len([n for n in plan.nets if n.treatment == "target_ft"]) == 14
    b486 = plan.net("base-bottomup-486")
    assert (b486.fc8_outputs, b486.max_iter, b486.solver.base_lr, b486.solver.stepsize) == (486, 450000, 0.01, 100000)
    assert (b486.copied, b486.frozen, b486.val_dataset) == (0, 0, "bottomup-486")
    # per-class budgets keep every class and validate on the whole set, like the reduced sets
    assert plan.net("base-images0250").fc8_outputs == 1000 and plan.net("base-images0250").val_dataset == "all"
    ro = plan.net("readout-topdown-127")
    assert (ro.base, ro.copied, ro.frozen, ro.fc8_outputs, ro.target) == ("base-topdown-127", 7, 7, 1000, "all")
    ft = plan.net("ft-sun397-base-topdown-127")
    assert (ft.base, ft.copied, ft.frozen, ft.fc8_outputs, ft.target) == ("base-topdown-127", 7, 0, 397, "sun397")
    s = ft.solver
    assert (s.max_iter, s.base_lr, s.stepsize, s.gamma) == (50000, 0.001, 20000, 0.1)
    assert plan.net("scratch-sun397").copied == 0
    assert [t.name for t in plan.targets] == ["sun397"] and plan.targets[0].train_list == Path("data/sun397/train.txt")


def test_readout_net_freezes_layers_1_to_7_and_trains_a_new_fc8():
    plan = load_plan("huh2016")
    net = plan.net("readout-bottomup-79")
    train_text = next(t for p, t in net_files(plan, net).items() if p.name.endswith(".train.prototxt"))
    proto = text_format.Merge(train_text, caffe_pb2().NetParameter())
    lrs = {layer.name: [p.lr_mult for p in layer.param] for layer in proto.layer if layer.param}
    assert all(lrs[name] == [0, 0] for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"))
    assert lrs["fc8"] == [1, 2]
    fc8 = next(layer for layer in proto.layer if layer.name == "fc8")
    assert fc8.inner_product_param.num_output == 1000
    data = next(layer for layer in proto.layer if layer.type == "Data")
    # it reads the original set, with the mean of the set it was pre-trained on
    assert data.data_param.source.endswith("all/train_lmdb")
    assert data.transform_param.mean_file.endswith("bottomup-79/mean.binaryproto")


def test_any_plan_can_transfer_its_nets_to_a_target(tmp_path):
    config = yaml.safe_load((PLAN_DIR / "tiny.yaml").read_text())
    config["targets"] = {"mine": {"classes": 3, "train": "x/train", "val": "x/val", "from": ["base-half0A"],
                                  "schedule": "default"}}
    plan = load(tmp_path, config)
    ft = plan.net("ft-mine-base-half0A")
    assert (ft.fc8_outputs, ft.copied, ft.frozen, ft.mean_dataset) == (3, 7, 0, "half0A")
    assert not any(n.name.startswith("ft-mine-base-half0B") for n in plan.nets)


@pytest.mark.parametrize("target, message", [
    ({"classes": 3}, r"targets\.t\.classes: give the images one way: .* got none"),
    ({"classes": 3, "train": "a", "val": "b", "synthetic": {}}, r"got folders \(train, val\) and synthetic"),
    ({"classes": 3, "train": "a"}, r"targets\.t: missing field 'val'"),
    ({"classes": 3, "train": "a", "val": "b", "from": ["nomatch-*"]}, r"targets\.t\.from: .* matches no net"),
    ({"classes": 3, "train": "a", "val": "b", "scratch": "fast"}, r"schedule 'fast' is not declared"),
    ({"classes": 1, "train": "a", "val": "b"}, r"targets\.t\.classes: 1 is out of range"),
])
def test_bad_targets_name_the_key(tmp_path, target, message):
    config = small_config()
    config["targets"] = {"t": target}
    with pytest.raises(TransferError, match=message):
        load(tmp_path, config)


def test_undeclared_label_set_dataset_is_an_error(tmp_path):
    config = small_config()
    config["experiments"]["huh2016"]["label_sets"].append("topdown-2")
    with pytest.raises(TransferError, match=r"dataset 'topdown-2' is not declared under 'datasets'"):
        load(tmp_path, config)


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)


def test_target_folders_become_caffe_lists(tmp_path):
    for split, n in (("train", 2), ("val", 1)):
        for cls in ("beach", "abbey", "cafe"):
            for i in range(n):
                _image(tmp_path / "img" / split / cls / f"{i}.jpg")
    spec = load(tmp_path, {**small_config(), "targets": {"scenes": {
        "classes": 3, "train": str(tmp_path / "img/train"), "val": str(tmp_path / "img/val")}}}).targets[0]
    train_root, train_list, val_root, val_list = targets.target_lists(spec, tmp_path / "out")
    assert train_list.read_text().splitlines() == ["abbey/0.jpg 0", "abbey/1.jpg 0", "beach/0.jpg 1",
                                                   "beach/1.jpg 1", "cafe/0.jpg 2", "cafe/1.jpg 2"]
    assert val_list.read_text().splitlines() == ["abbey/0.jpg 0", "beach/0.jpg 1", "cafe/0.jpg 2"]
    assert train_root == tmp_path / "img/train"
    _image(tmp_path / "img" / "val" / "dock" / "0.jpg")
    with pytest.raises(TransferError, match=r"img/val: class folders differ .*extra \['dock'\]"):
        targets.target_lists(spec, tmp_path / "out")
    spec4 = load(tmp_path, {**small_config(), "targets": {"scenes": {
        "classes": 4, "train": str(tmp_path / "img/train"), "val": str(tmp_path / "img/train")}}}).targets[0]
    with pytest.raises(TransferError, match=r"targets\.scenes: the images have 3 classes, the plan says classes: 4"):
        targets.target_lists(spec4, tmp_path / "out2")
    (tmp_path / "img" / "val" / "dock").rename(tmp_path / "dock")
    (tmp_path / "img" / "train" / "cafe" / "2.jpg").symlink_to("2.jpg")   # a link that loops is no image
    with pytest.raises(TransferError, match=r"cafe/2.jpg: a symbolic link that loops .*not an image file"):
        targets.target_lists(spec, tmp_path / "out3")


def test_a_plan_of_both_papers_shares_the_whole_set_base():
    """Plan `full` has the first paper's whole-set base (family `whole`) and Huh's original-set net in one:
    base-all. Huh's tables find it there (one run of each net here, so a cell is that net's number)."""
    config = yaml.safe_load((PLAN_DIR / "full.yaml").read_text())
    plan = plan_mod.expand({**config, "replicates": 1}, PLAN_DIR / "full.yaml")
    assert plan.net("base-all").family == "whole"
    values = {n.name: (sum(map(ord, n.name)) % 500) / 1000 + 0.2 for n in plan.nets}
    h = huh_report.compute(plan, values)
    assert h.original == "all" and h.sets["all"].kind == "original"
    t1 = h.table1["synth10"]
    assert (t1.original.mean, t1.coarse.mean, t1.coarse_set, t1.random.mean) == (
        values["ft-synth10-base-all"], values["ft-synth10-base-bottomup-6"], "bottomup-6", values["scratch-synth10"])
    row = h.table2["synth10"]["600"]
    assert (row.classes.mean, row.classes_set, row.images.mean, row.images_set) == (
        values["ft-synth10-base-budget600-classes"], "budget600-classes", values["ft-synth10-base-images0030"],
        "images0030")


def test_report_tables_and_figures_from_net_numbers(tmp_path):
    plan = load_plan("huh2016")
    # Every net gets a distinct number from its name, so each table cell is traceable to one net.
    values = {n.name: (sum(map(ord, n.name)) % 500) / 1000 + 0.2 for n in plan.nets}
    h = huh_report.compute(plan, values)
    t1 = h.table1["sun397"]
    assert (t1.original.mean, t1.coarse.mean, t1.coarse_set, t1.random.mean) == (
        values["ft-sun397-base-all"], values["ft-sun397-base-topdown-127"], "topdown-127", values["scratch-sun397"])
    assert t1.original.nets == ("ft-sun397-base-all",) and t1.original.n == 1 and t1.original.ci95 is None
    row = h.table2["sun397"]["500000"]
    assert row.classes.mean == values["ft-sun397-base-budget500k-classes"]
    assert row.images.mean == values["ft-sun397-base-images0500"] and row.images_set == "images0500"
    assert sorted(h.table2["sun397"]) == ["125000", "250000", "500000"]
    assert h.change486["sun397"].mean == pytest.approx(values["ft-sun397-base-bottomup-486"]
                                                       - values["ft-sun397-base-all"])
    assert h.sets["bottomup-9"].readout.mean == values["readout-bottomup-9"]
    assert h.sets["all"].readout.mean == values["base-all"] and h.sets["images0050"].images_per_class == 50
    md = "\n".join(huh_markdown.markdown(h, []))
    assert "| random init | " in md and f"| {100 * published.HUH_TABLE1_SUN['random']:.1f} |" in md
    assert "published, 486 bottom-up classes on SUN: -0.8 points." in md
    assert "*N replicates: 1 replicate behind each cell" in md
    files = huh_figures.figures(h, tmp_path, plan.name)
    assert files == ["huh_classes.png", "huh_classes.pdf", "huh_images.png", "huh_images.pdf"]
    assert all((tmp_path / f).stat().st_size > 5000 for f in files)


def test_huh_replicates_give_intervals_and_verdicts(tmp_path):
    """huh-small with 3 replicates: each cell is the mean of the three replicates' nets, with an interval;
    pre-training beats scratch where every pre-trained net is far above every scratch net."""
    config = small_config()
    config["replicates"] = 3
    plan = load(tmp_path, config)
    rng = np.random.default_rng(0)
    values = {n.name: (0.30 if n.treatment == "scratch" else 0.60) + 0.01 * rng.standard_normal()
              for n in plan.nets}
    h = huh_report.compute(plan, values)
    t1 = h.table1["synth10"]
    assert t1.original.n == 3 and len(t1.original.nets) == 3 and t1.original.ci95 is not None
    assert t1.random.nets == ("scratch-synth10", "scratch-synth10-r1", "scratch-synth10-r2")
    improving = {"base-all-r1": True}   # a base still climbing: named under the verdicts that rest on it
    got = {v.key: v for v in verdicts.huh(h, improving, {n.name: n.base for n in plan.nets}, ["synth10"])}
    assert got["pretraining_beats_scratch:synth10"].answer == "yes"
    assert got["fewer_images_hurt_mildly:synth10"].answer == "not resolved"   # no effect in these numbers
    assert "(N = 3 replicates)" in got["pretraining_beats_scratch:synth10"].line()
    assert "1 of its nets or their bases were still improving at their last tests (`base-all-r1`)" in \
        got["pretraining_beats_scratch:synth10"].caution


# ---------------------------------------------------------------------------- trained end to end (slow)

def tiny_huh_config(root: Path) -> dict:
    """huh-small at a test's size: 8 classes, the man-made/natural label set, a 4-class synthetic target."""
    c = small_config()
    c.update(name="huh-tiny", data_dir=str(root / "data"), runs_dir=str(root / "runs"),
             split_dir=str(root / "synthetic"), nets_dir=str(root / "prototxt"), solvers_dir=str(root / "solvers"))
    c["synthetic"] = {"classes": 8, "train_per_class": 60, "val_per_class": 10, "size": 64, "seed": 1}
    c["model"].update(train_batch=32, test_batch=20)
    # long enough that the man-made/natural net leaves chance (at about 150 iterations) well before its step
    c["solver"].update(stepsize=300, max_iter=400, test_interval=25, test_iter=4, snapshot=100, display=10)
    c["schedules"] = {"readout": {"stepsize": 300, "max_iter": 300},
                      "target": {"base_lr": 0.001, "stepsize": 60, "max_iter": 60, "test_iter": 2}}
    c["datasets"] = {"all": 8, "bottomup-2": 2}
    c["experiments"] = {"huh2016": {"original": "all", "label_sets": ["bottomup-2"],
                                    "readout": {"dataset": "all", "schedule": "readout"}}}
    c["targets"] = {"synth4": {"classes": 4, "schedule": "target",
                               "synthetic": {"classes": 4, "train_per_class": 20, "val_per_class": 10,
                                             "size": 64, "seed": 9}}}
    return c


@pytest.mark.requires_caffe
def test_tiny_huh_plan_trains_end_to_end(tmp_path):
    from transfer.caffe.env import caffe_pb2
    from transfer.data.lmdb_store import iter_items, open_read
    from transfer.plan.netfiles import write_plan
    from transfer.data.prepare import prepare_plan_data
    from transfer.results.report import make_report

    root = tmp_path / "huh"
    root.mkdir()
    plan = load(root, tiny_huh_config(root))
    prepare_plan_data(plan, jobs=2)
    write_plan(plan)
    # the label-set database is the whole one relabelled: same keys, labels through the mapping
    pb2 = caffe_pb2()

    def datums(db: Path) -> dict[bytes, int]:
        env = open_read(db)
        out = {}
        for k, v in iter_items(env):
            d = pb2.Datum()
            d.ParseFromString(v)
            out[k] = d.label
        return out
    whole, coarse = datums(plan.dataset("all").train), datums(plan.dataset("bottomup-2").train)
    assert list(coarse) == list(whole) and set(coarse.values()) == {0, 1}
    res = tinyrun.run_cli("run", "--plan", str(plan.path), "--cpu", "--jobs", "2", timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = make_report(str(plan.path), None, root / "report")
    h = report.huh2016
    coarse_own, readout = h.sets["bottomup-2"].own.mean, h.sets["bottomup-2"].readout.mean
    assert coarse_own > 0.5 + 0.1, f"man-made/natural net at {coarse_own} (chance 0.5)"
    # The readout is the coarse net's seven layers, frozen through training, under a new fc8 that
    # learned. How good the coarse features are is the experiment's result, not this test's: on these
    # images man-made/natural can be told by the grounds alone.
    def blobs(path: Path) -> dict[str, list]:
        model = pb2.NetParameter()
        model.ParseFromString(path.read_bytes())
        return {l.name: [list(b.data) for b in l.blobs] for l in model.layer if l.blobs}
    coarse_w = blobs(plan.net("base-bottomup-2").run.final_weights)
    readout_run = plan.net("readout-bottomup-2").run
    start, end = blobs(readout_run.init_weights), blobs(readout_run.final_weights)
    for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"):
        assert start[layer] == end[layer] == coarse_w[layer], layer
    assert start["fc8"] != end["fc8"] and len(end["fc8"][1]) == 8
    assert 0 <= readout <= 1
    t1 = h.table1["synth4"]    # no top-down set in this plan: the coarse row is its label set
    assert t1.coarse_set == "bottomup-2" and t1.coarse == h.sets["bottomup-2"].targets["synth4"]
    assert t1.original == h.sets["all"].targets["synth4"] is not None and t1.random is None
    rec = json.loads(plan.net("readout-bottomup-2").run.surgery_record.read_text())
    assert rec["copied"] == rec["frozen"] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    assert {"huh_classes.png", "huh_images.png", "curves.png", "report.md"} <= \
        {p.name for p in (root / "report").iterdir()}
    assert "### Table 1 (target `synth4`)" in (root / "report" / "report.md").read_text()
    # no scratch net, no budgets in this plan: no verdict on them, only on what it has
    assert [v.key for v in report.verdicts] == []
