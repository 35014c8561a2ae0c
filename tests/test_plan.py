"""The plan: YAML read once into typed specs, every key checked, families expanded through one table."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from transfer.plan import load as plan_mod
from transfer.core.errors import TransferError
from transfer.plan.model import Net
from transfer.plan.load import load_plan
from transfer.plan.datasets import WHOLE, DatasetSpec, Kind
from transfer.plan.families import FAMILIES
from transfer.plan.spec import SolverSpec

TINY = Path(plan_mod.PLAN_DIR) / "tiny.yaml"


def tiny_config() -> dict:
    return yaml.safe_load(TINY.read_text())


def load(tmp_path: Path, config: dict):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load_plan(str(path))


def test_specs_are_typed_and_frozen():
    plan = load_plan("paper")
    net = plan.net("half0A-3-half0B")
    assert isinstance(net.solver, SolverSpec) and net.solver.max_iter == net.max_iter == 450000
    assert plan.model.widths == (96, 256, 384, 384, 256, 4096, 4096) and plan.solver_mode == "GPU"
    assert (net.target, net.val_dataset, net.mean_dataset, net.source) == ("half0B", "half0B", "half0A", "half0A")
    assert str(net.files.mean) == "data/ilsvrc12/half0A/mean.binaryproto"
    assert net.run.where == Path("runs/paper/half0A-3-half0B") and net.run.max_iter == 450000
    with pytest.raises(AttributeError):
        net.solver.max_iter = 1  # type: ignore[misc]
    assert plan.net("reduced-0010").val_dataset == "all"


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(runs_dri="x"), r"p\.yaml: runs_dri: unknown field 'runs_dri' \(did you mean 'runs_dir'\?\)"),
    (lambda c: c["solver"].update(max_iter="60"), r"solver\.max_iter: expected an integer, got '60'"),
    (lambda c: c["solver"].update(momentum=1.5), r"solver\.momentum: 1\.5 is out of range"),
    (lambda c: c["solver"].update(lr_policy="stp"), r"solver\.lr_policy: 'stp' is not one of .*did you mean 'step'"),
    (lambda c: c["model"].update(crop=65), r"model\.crop: 65 is out of range \(must be in 1\.\.64\)"),
    (lambda c: c["model"].update(widths=[1, 2]), r"model\.widths: expected 7 positive integers"),
    (lambda c: c.update(name="my plan"), r"name: 'my plan' is not a usable name"),
    (lambda c: c["datasets"].update({"a b": 3}), r"datasets\.a b: 'a b' is not a usable name"),
    (lambda c: c["experiments"].update(natmann={}), r"experiments\.natmann: unknown family 'natmann' "
                                                    r"\(did you mean 'natman'\?\)"),
    (lambda c: c["experiments"]["random_split"].update(split=[0]), r"experiments\.random_split\.split: "
                                                                   r"unknown field 'split' \(did you mean 'splits'\?\)"),
    (lambda c: c.update(experiments={}), r"the plan declares no nets"),
    (lambda c: c["experiments"]["random_split"].update(splits=["0; rm"]), r"split '0; rm' must be a seed"),
    (lambda c: c.update(solver_mode="TPU"), r"solver_mode: 'TPU' is not one of CPU, GPU"),
    (lambda c: c.update(schedules={"fast": {"max_iters": 3}}), r"schedules\.fast\.max_iters: unknown solver field"),
    # a misspelt top-level key is not a plan of 0 nets
    (lambda c: c.update(experimets=c.pop("experiments")),
     r"p\.yaml: experimets: unknown field 'experimets' \(did you mean 'experiments'\?\)"),
    (lambda c: c["experiments"]["random_split"].update(n=[True]), r"field 'n' has True; n must be an integer in 1\.\.7"),
    (lambda c: c["experiments"]["random_split"].update(n=[8]), r"field 'n' has 8; n must be an integer in 1\.\.7"),
    (lambda c: c["experiments"]["random_split"].update(n=[0]), r"field 'n' has 0"),
    (lambda c: c["experiments"]["random_split"].update(n="3"), r"random_split\.n: expected a non-empty list, got '3'"),
    (lambda c: c.update(name="tiny\nrm -rf x"), r"name: 'tiny\\nrm -rf x' is not a usable name"),
    (lambda c: c.update(name="a/b"), r"name: 'a/b' is not a usable name"),
    (lambda c: c.update(name=".."), r"name: '\.\.' is not a usable name"),
    (lambda c: c.update(name="-rf"), r"name: '-rf' is not a usable name"),
    (lambda c: c["datasets"].update({"..": 3}), r"datasets\.\.\.: '\.\.' is not a usable name"),
    (lambda c: c["experiments"].update(whole={"dataset": "../../etc"}), r"whole\.dataset: '\.\./\.\./etc' is not"),
    (lambda c: c["experiments"].update(reduced={"counts": [0]}), r"count 0 must be a positive integer"),
    (lambda c: c.update(runs_dir="runs\nx"), r"runs_dir: 'runs\\nx' holds a control character"),
    (lambda c: c["solver"].update(max_iter=0), r"solver\.max_iter: 0 is out of range \(must be at least 1\)"),
    (lambda c: c["synthetic"].update(classes=True), r"synthetic\.classes: expected an integer, got True"),
    (lambda c: c.update(top_k=0), r"p\.yaml: top_k: 0 is out of range \(must be at least 1\)"),
    (lambda c: c.update(top_k="3"), r"top_k: expected an integer, got '3'"),
    (lambda c: (c["datasets"].update(all=8), c["experiments"].update(whole={"dataset": "all", "schedule": "long"})),
     r"net 'base-all': schedule 'long' is not declared under 'schedules'"),
])
def test_bad_plans_name_file_key_and_value(tmp_path, edit, message):
    config = tiny_config()
    edit(config)
    with pytest.raises(TransferError, match=message):
        load(tmp_path, config)


def test_a_new_family_is_one_function(tmp_path, monkeypatch):
    def single(b, blk):
        blk.check_keys(("dataset",))
        name = blk.name("dataset")
        b.dataset(DatasetSpec(name, Kind.CLASSES, None, parent=WHOLE, class_list=name), blk.where)
        b.add_base(name, "single", None, None)

    monkeypatch.setitem(FAMILIES, "single", single)
    config = tiny_config()
    config["experiments"] = {"single": {"dataset": "half0B"}}
    plan = load(tmp_path, config)
    assert [n.name for n in plan.nets] == ["base-half0B"] and plan.nets[0].family == "single"
    assert plan.datasets["half0B"] == DatasetSpec("half0B", Kind.CLASSES, 4, parent=WHOLE, class_list="half0B")


def test_with_bases_adds_unfinished_ancestors_in_order():
    plan = load_plan("tiny")
    chosen = plan.with_bases(plan.select("half0A-2-half0B"))
    assert [n.name for n in chosen] == ["base-half0A", "half0A-2-half0B"]
    assert all(isinstance(n, Net) for n in chosen)


def test_a_bad_plan_exits_2_naming_the_file_and_key(tmp_path):
    """Through the command line: no traceback, no plan of 0 nets, exit status 2."""
    import subprocess
    import sys

    from transfer import REPO
    config = tiny_config()
    config["experimets"] = config.pop("experiments")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    res = subprocess.run([sys.executable, "-m", "transfer", "plan", "show", "--plan", str(path)], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert f"{path}: experimets: unknown field 'experimets' (did you mean 'experiments'?)" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


# ---------------------------------------------------------------------------- data sets and replicates

def test_every_data_set_has_the_kind_its_family_gives_it():
    kinds = {name: spec.kind for name, spec in load_plan("paper").datasets.items()}
    assert kinds["all"] == Kind.WHOLE and kinds["half3B"] == kinds["manmade"] == Kind.CLASSES
    assert kinds["reduced0010"] == Kind.REDUCED
    huh = load_plan("huh2016").datasets
    assert huh["topdown-127"].kind == Kind.LABELSET and huh["topdown-127"].classes == 127
    assert (huh["images0050"].kind, huh["images0050"].per_class, huh["images0050"].classes) == (Kind.SAMPLE, 50, 1000)
    assert (huh["budget500k-classes"].kind, huh["budget500k-classes"].per_class) == (Kind.CLASS_BUDGET, 1000)
    assert huh["sun397"].kind == Kind.TARGET
    # the same name in two meanings is refused, naming both
    config = tiny_config()
    config["experiments"]["reduced"] = {"counts": [5], "val_dataset": "all"}
    config["datasets"] = {**config["datasets"], "all": 8, "reduced0005": 3}
    with pytest.raises(TransferError, match=r"datasets.reduced0005: 3 labels declared, but "
                                            r"experiments.reduced.counts makes it a set of 8"):
        expand_config(config)


def expand_config(config: dict):
    return plan_mod.expand(config, TINY)


def test_replicates_multiply_every_net_and_random_splits_draw_more_splits():
    config = tiny_config()
    config["replicates"] = 3
    plan = expand_config(config)
    assert plan.replicates == 3 and len(plan.nets) == 3 * len(expand_config(tiny_config()).nets)
    # random splits: replicates are further splits (seeds 0, 1, 2), each with its own bases and halves
    bases = [n for n in plan.nets if n.treatment == "base"]
    assert [n.name for n in bases] == ["base-half0A", "base-half0B", "base-half1A", "base-half1B",
                                       "base-half2A", "base-half2B"]
    anb = [n for n in plan.nets if n.group == "half*A-2-half*B"]
    assert [(n.name, n.base, n.replicate) for n in anb] == [
        ("half0A-2-half0B", "base-half0A", 0), ("half1A-2-half1B", "base-half1A", 1),
        ("half2A-2-half2B", "base-half2A", 2)]
    assert plan.datasets["half2A"] == DatasetSpec("half2A", Kind.CLASSES, 4, parent=WHOLE, class_list="half2A",
                                                  half=(2, "A"))
    assert plan.net("half2A-2-half2B").released_name is None     # no released net of seed 2
    # other families: seeded reruns named -rN, each copying from its base's replicate
    config = yaml.safe_load((Path(plan_mod.PLAN_DIR) / "full.yaml").read_text())
    config["replicates"] = 2
    small = expand_config(config)
    assert small.net("natural-4-manmade-r1").base == "base-natural-r1"
    assert small.net("natural-4-manmade-r1").group == "natural-4-manmade"
    assert small.net("base-natural-r1").run.where.name == "base-natural-r1"
    assert "half0A-3-half0B-r1" not in small.by_name and "half1A-3-half1B" in small.by_name
    assert "half2A-3-half2B" not in small.by_name     # split 0 and 2 replicates: splits 0 and 1
    with pytest.raises(TransferError, match="replicates: 0 is out of range"):
        expand_config({**tiny_config(), "replicates": 0})


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    """Two `solver:` blocks: YAML keeps the second without a word, and every net trained with it. Refused
    at the top level and inside a block, through the command line, before anything runs."""
    import subprocess
    import sys

    from transfer import REPO
    text = TINY.read_text().replace("runs_dir: work/tiny/runs", f"runs_dir: {tmp_path / 'runs'}")
    lines = text.splitlines()
    first = lines.index("solver:") + 1
    block = []
    for ln in lines[first:]:
        if not ln.startswith("  "):
            break
        block.append(ln.replace("base_lr: 0.01", "base_lr: 0.5"))
    twice = tmp_path / "twice.yaml"
    twice.write_text(text + "solver:\n" + "\n".join(block) + "\n")
    second = len(lines) + 1
    for cmd in (["plan", "show", "--plan", str(twice)],
                ["run", "--plan", str(twice), "--cpu", "--only", "base-half0A"]):
        res = subprocess.run([sys.executable, "-m", "transfer", *cmd], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 2, res.stderr
        assert f"{twice}:{second}: key 'solver' is given twice in the same block (first at line {first})" \
               in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and res.stdout == ""
    # inside a block: two `base_lr:` in one `solver:`
    nested = tmp_path / "nested.yaml"
    at = lines.index("solver:") + 1
    nested.write_text("\n".join(lines[:at] + ["  base_lr: 0.5"] + lines[at:]) + "\n")
    res = subprocess.run([sys.executable, "-m", "transfer", "plan", "show", "--plan", str(nested)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "key 'base_lr' is given twice in the same block" in res.stderr, res.stderr
    assert not (tmp_path / "runs").exists()   # nothing trained, nothing written

    inner = tmp_path / "inner.yaml"
    at = text.index("  max_iter:")
    line = text[:at].count("\n") + 1
    inner.write_text(text[:at] + "  max_iter: 6000\n" + text[at:])
    with pytest.raises(TransferError, match=rf"inner.yaml:{line + 1}: key 'max_iter' is given twice in the "
                                            rf"same block \(first at line {line}\)"):
        load_plan(str(inner))
    # a merge may still override a key it brings in: that is what `<<` is for
    merged = tmp_path / "merged.yaml"
    merged.write_text(text.replace("solver:\n", "solver: &solver\n", 1)
                      + "schedules:\n  slow:\n    <<: *solver\n    base_lr: 0.001\n")
    from transfer.core.yamlfile import load_yaml
    slow = load_yaml(merged)["schedules"]["slow"]
    assert slow["base_lr"] == 0.001 and slow["max_iter"] == 60
    assert load_plan(str(merged)).name == "tiny"


def test_whole_set_nets_share_their_own_schedule():
    """`schedule` in `whole` and `random_weights`: the random-weights nets train as long as the base they
    are compared with, which may differ from the halves' (a small plan's whole set levels off later)."""
    p = load_plan("small")
    assert p.net("random-4").solver == p.net("base-all").solver != p.net("base-half0A").solver
    assert p.net("base-all").family == "whole" and p.top_k == 1
    paper = load_plan("paper")
    assert paper.net("random-4").solver == paper.net("base-all").solver == paper.net("base-half0A").solver
    assert paper.top_k is None   # scaled to the tests: 10 of the paper's 450
