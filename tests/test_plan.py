"""The plan: YAML read once into typed specs, every key checked, families expanded through one table."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from transfer import plan as plan_mod
from transfer.errors import TransferError
from transfer.plan import FAMILIES, Net, load_plan
from transfer.spec import SolverSpec

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
])
def test_bad_plans_name_file_key_and_value(tmp_path, edit, message):
    config = tiny_config()
    edit(config)
    with pytest.raises(TransferError, match=message):
        load(tmp_path, config)


def test_a_new_family_is_one_function(tmp_path, monkeypatch):
    def single(b, blk):
        blk.check_keys(("dataset",))
        b.add_base(blk.name("dataset"), "single", None, None)

    monkeypatch.setitem(FAMILIES, "single", single)
    config = tiny_config()
    config["experiments"] = {"single": {"dataset": "half0B"}}
    plan = load(tmp_path, config)
    assert [n.name for n in plan.nets] == ["base-half0B"] and plan.nets[0].family == "single"


def test_with_bases_adds_unfinished_ancestors_in_order():
    plan = load_plan("tiny")
    chosen = plan.with_bases(plan.select("half0A-2-half0B"))
    assert [n.name for n in chosen] == ["base-half0A", "half0A-2-half0B"]
    assert all(isinstance(n, Net) for n in chosen)
