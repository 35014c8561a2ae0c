"""How far training moved each layer of a net that starts from copied weights (Neyshabur et al. 2020,
"What is being transferred in transfer learning?"): per layer, the relative distance of the final
weights from the start,

    from_init[l] = ||W_final - W_init|| / ||W_init||     (the run's init.caffemodel, written by surgery)
    from_base[l] = ||W_final - W_base|| / ||W_base||     (the base's final weights; copied layers only)

over the weight blob (biases left out: a handful of numbers, and bias fillers are constants, 0 for
some layers). For a copied layer the two agree, because surgery copies it bit for bit; the base's
weights are read as well so that a start that is not the base's shows (`init_equals_base`). Above
the copied layers the base's weights are unrelated units, so no distance to them is given.
Frozen layers must read 0. Caffemodels are read with caffe_pb2 alone (transfer/caffemodel.py).
The result of a net is cached in its run directory, keyed by the three files' sha256.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..caffe.caffemodel import layer_arrays
from ..core.errors import TransferError
from ..core.files import atomic_write, shown
from ..plan.model import LAYERS, Net, Plan
from .activations import sha256_of


@dataclass(frozen=True)
class Movement:
    """One net's weight movement per layer (LAYERS order)."""

    net: str
    base: str
    treatment: str
    family: str
    n: int | None
    copied: int
    frozen: int
    from_init: dict[str, float]
    from_base: dict[str, float | None]
    init_equals_base: dict[str, bool]      # copied layers only

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any]) -> Movement:
        return Movement(**d)


def relative_distance(a: np.ndarray, ref: np.ndarray) -> float:
    """||a - ref|| / ||ref|| in float64 (Frobenius norms)."""
    if a.shape != ref.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {ref.shape}")
    ref64 = ref.astype(np.float64)
    den = float(np.linalg.norm(ref64))
    return float(np.linalg.norm(a.astype(np.float64) - ref64) / den) if den > 0 else float("nan")


def _weights(path: Path, net: Net) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise TransferError(f"net '{net.name}': {shown(path)} does not exist")
    arrays = layer_arrays(path)
    missing = [l for l in LAYERS if l not in arrays]
    if missing:
        raise TransferError(f"net '{net.name}': {shown(path)} has no weights for layer(s) {missing}")
    return {l: arrays[l][0] for l in LAYERS}


def compute(net: Net, base: Net) -> Movement:
    """The movement of `net` (finished, with an init.caffemodel) from its start and from `base`."""
    init = _weights(net.run.init_weights, net)
    final = _weights(net.run.final_weights, net)
    theirs = _weights(base.run.final_weights, base)
    copied = LAYERS[:net.copied]
    return Movement(
        net=net.name, base=base.name, treatment=net.treatment, family=net.family, n=net.n, copied=net.copied,
        frozen=net.frozen,
        from_init={l: relative_distance(final[l], init[l]) for l in LAYERS},
        from_base={l: relative_distance(final[l], theirs[l]) if l in copied else None for l in LAYERS},
        init_equals_base={l: bool(np.array_equal(init[l], theirs[l])) for l in copied})


def movement(plan: Plan, net: Net) -> Movement:
    """`compute`, through the cache in the net's run directory."""
    base = plan.base_of(net)
    if base is None:
        raise TransferError(f"net '{net.name}' copies no layers: it has no movement from a base")
    files = [net.run.init_weights, net.run.final_weights, base.run.final_weights]
    for f in files:
        if not f.is_file():
            raise TransferError(f"net '{net.name}': {shown(f)} does not exist")
    key = hashlib.sha256(json.dumps([sha256_of(f) for f in files]).encode()).hexdigest()[:16]
    path = net.run.analysis_dir / f"movement-{key}.json"
    if path.is_file():
        try:
            return Movement.from_json(json.loads(path.read_text()))
        except (ValueError, TypeError):
            pass   # damaged: computed again
    result = compute(net, base)
    for old in net.run.analysis_dir.glob("movement-*.json"):
        old.unlink(missing_ok=True)
    atomic_write(path, json.dumps(result.to_json(), allow_nan=True) + "\n")
    return result
