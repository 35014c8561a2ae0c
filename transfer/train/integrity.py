"""What a run directory must hold for its training to count: the plan's definition of the net, the
init weights surgery wrote, and frozen layers equal to where they came from.

A run directory records the definition it trains at its first use (transfer/plan/definition.py): a
later use by another definition (a second plan sharing the runs_dir, a plan changed since) is refused,
naming both and what differs, unless asked to start over (`--retrain`: the old files are set aside
in `superseded/<time>/`). Surgery records the sha256 of init.caffemodel and of the base weights it
copied from: before every attempt both must still match, so a damaged init file or a base trained
again since is named before caffe runs; and after training the frozen layers are compared with their
source of truth, the base's final weights (copied layers) or init.caffemodel as surgery wrote it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..caffe.caffemodel import identical_layers
from ..core.console import stage
from ..core.errors import TransferError
from ..core.files import digest, shown
from ..plan.definition import recorded_by
from ..plan.model import LAYERS, Net, Plan

log = stage("train")


# ---------------------------------------------------------------------------- the definition

def definition_problem(plan: Plan, net: Net) -> str | None:
    """Why the net's run directory cannot train the plan's definition of it (it holds another), or None."""
    other = net.run.other_definition()
    if other is None:
        return None
    recorded, diffs = other
    return (f"{net.name}: {shown(net.run.path)} holds another definition of the net: recorded by "
            f"{recorded_by(recorded)}; plan '{plan.name}' ({shown(plan.path)}) differs (recorded vs this plan): "
            + "; ".join(diffs[:6])
            + (f"; ... {len(diffs) - 6} more" if len(diffs) > 6 else ""))


START_OVER = ("give each plan its own runs_dir to keep both, or start over with --retrain (the old files "
              "move to the run directory's superseded/ folder), or move the run directory away")


def claim(plan: Plan, net: Net, retrain: bool) -> None:
    """Before anything is written to the run directory: refuse one that holds another definition
    (with `retrain`, set its files aside first)."""
    problem = definition_problem(plan, net)
    if problem is None:
        return
    if not retrain:
        raise TransferError(f"{problem}\n  {START_OVER}")
    where = net.run.supersede()
    log.info("%s: --retrain: another definition's files set aside in %s", net.name, shown(where))


def record(plan: Plan, net: Net) -> None:
    """At the directory's first use (or its first since definitions are recorded): record the definition."""
    if not net.run.definition_file.is_file():
        net.run.record_definition(plan.name, shown(plan.path))


# ---------------------------------------------------------------------------- the init weights

def init_fix(plan: Plan, net: Net) -> str:
    return (f"start the net over: `transfer train {net.name} --plan {plan.arg} --retrain` sets its run "
            f"directory's files aside (superseded/) and redoes surgery")


def surgery_record(net: Net) -> dict[str, Any]:
    path = net.run.surgery_record
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TransferError(f"{shown(path)}: cannot be read ({exc}): the record of how init.caffemodel was "
                            "made is damaged; start the net over (--retrain)") from None


def init_problem(plan: Plan, net: Net) -> str | None:
    """Whether init.caffemodel (and the base weights it copied) are still what surgery recorded."""
    rec = surgery_record(net)
    init = net.run.init_weights
    if rec.get("init_sha256") and digest(init) != rec["init_sha256"]:
        return (f"{net.name}: {shown(init)} is not the file surgery wrote (sha256 {digest(init)[:12]}, "
                f"{shown(net.run.surgery_record)} records {rec['init_sha256'][:12]}): damaged or replaced "
                "since; its weights are not the net's start")
    base = plan.base_of(net)
    if base is not None and rec.get("base_sha256") and base.run.final_weights.is_file():
        now = digest(base.run.final_weights)
        if now != rec["base_sha256"]:
            return (f"{net.name}: {shown(init)} copied layers 1..{net.copied} from weights of '{base.name}' "
                    f"(sha256 {rec['base_sha256'][:12]}) that are not its final weights now "
                    f"({shown(base.run.final_weights)}, sha256 {now[:12]}): the base was trained again since")
    return None


# ---------------------------------------------------------------------------- frozen layers

def frozen_check(plan: Plan, net: Net, final: Path) -> dict[str, Any]:
    """Frozen layers of `final` against their source of truth: layers copied from the base against
    the base's final weights, frozen random layers against init.caffemodel (checked against surgery's
    sha256 first, init_problem). Returns {layers, identical, changed, against}."""
    frozen = LAYERS[:net.frozen]
    copied = [name for name in frozen if LAYERS.index(name) < net.copied]
    sources: dict[Path, list[str]] = {}
    base = plan.base_of(net)
    if copied and base is not None:
        sources[base.run.final_weights] = copied
    drawn = [name for name in frozen if name not in copied or base is None]
    if drawn:
        sources[net.run.init_weights] = drawn
    changed = []
    for source, layers in sources.items():
        same = identical_layers(source, final, layers)
        changed += [name for name in layers if not same[name]]
    return {"layers": frozen, "identical": not changed, "changed": changed,
            "against": {shown(source): layers for source, layers in sources.items()}}


def against_text(check: dict[str, Any], plan: Plan, net: Net) -> str:
    """`conv1, conv2 bit-identical to base-half0A's final weights`, for the log line of a finished net."""
    base = plan.base_of(net)
    parts = []
    for source, layers in check["against"].items():
        what = (f"{base.name}'s final weights" if base is not None and source == shown(base.run.final_weights)
                else "init.caffemodel as surgery wrote it")
        parts.append(f"{', '.join(layers)} bit-identical to {what}")
    return "; ".join(parts)
