"""notebooks/inspect_weights.ipynb runs headless on the trained tiny plan and reports what surgery
and training did."""
from __future__ import annotations

import json

import pytest

from transfer import REPO
from transfer.plan.model import LAYERS

import tinyrun  # noqa: E402

pytestmark = pytest.mark.requires_caffe
NOTEBOOK = REPO / "notebooks" / "inspect_weights.ipynb"


def execute(params: dict) -> "nbformat.NotebookNode":  # noqa: F821
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    return nb


def _stream(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_notebook_reports_copied_frozen_and_trained_layers(tmp_path_factory):
    plan, res = tinyrun.trained_plan(tmp_path_factory)
    assert res.returncode == 0, res.stdout
    nb = execute({"PLAN": str(plan.path), "BASE": "base-half0A", "NET": "half0A-2-half0B"})
    summary = json.loads(_stream(nb.cells[-1]).strip().splitlines()[-1])
    # conv1, conv2 copied bit-exactly; the rest drawn fresh
    assert summary["init_equals_base"] == {l: l in ("conv1", "conv2") for l in LAYERS}
    # frozen conv1, conv2 unchanged by training; every other layer moved
    assert summary["final_equals_init"] == {l: l in ("conv1", "conv2") for l in LAYERS}
    assert summary["relative_change"]["conv1"] == 0.0 and summary["relative_change"]["conv3"] > 0
    table = next(_stream(c) for c in nb.cells if c.cell_type == "code" and "init = base" in _stream(c))
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert rows["conv2"][2:4] == ["yes", "yes"] and rows["fc6"][2:4] == ["no", "no"]
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3   # conv1 filter grids, change per layer, CKA and movement per layer
    # inside the nets: the frozen copies compute what the base computes; the layer above does not
    cka = summary["cka_vs_base"]
    assert cka["conv1"] == pytest.approx(1.0, abs=1e-9) and cka["conv2"] == pytest.approx(1.0, abs=1e-9)
    assert cka["conv3"] < 0.999
    assert summary["movement_from_init"]["conv2"] == 0.0 and summary["movement_from_init"]["conv3"] > 0


def test_notebook_on_a_finetuned_net(tmp_path_factory):
    plan, _ = tinyrun.trained_plan(tmp_path_factory)
    nb = execute({"PLAN": str(plan.path), "BASE": "base-half0A", "NET": "half0A-6-half0B-ft"})
    summary = json.loads(_stream(nb.cells[-1]).strip().splitlines()[-1])
    assert summary["init_equals_base"] == {l: l in LAYERS[:6] for l in LAYERS}
    assert not any(summary["final_equals_init"].values())   # nothing frozen: every layer learned
    assert summary["cka_vs_base"]["conv1"] < 1 - 1e-6 and summary["movement_from_init"]["conv1"] > 0
