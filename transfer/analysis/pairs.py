"""Which nets are compared, read off the plan's fields (treatment, family, split, n, base, target):
never off their names.

Kinds of pair (each compared layer by layer on the validation images of one net, `images`):
  base-base      the two bases of one split (baseA vs baseB; man-made vs natural): generality measured
                 directly, as similarity of what two nets trained on different classes compute
  vs-target      a net that copies layers vs the base trained on its target data set (AnB, AnB+, BnB,
                 BnB+ vs baseB; random-weights nets vs the base on their data set)
  vs-source      a transfer net vs the base it copies from (AnB, AnB+ vs baseA): where it stops being
                 its source (frozen layers are identical to it by construction)
  replicate      two nets made the same way: the same family, treatment and n on another random split,
                 or the same source and target made again (a plan's replicates); the noise floor
  huh-base-all   Huh et al.: each pre-training set's base vs the base on the original set
  init-final     a reference base at its random start vs itself trained: how much training changed it
  init-init      the two bases of a base-base pair, both at their random start: the similarity that the
                 architecture and the images give without any learning (the null for base-base)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..plan.datasets import Kind
from ..plan.model import Net, Plan

KINDS = ("base-base", "vs-target", "vs-source", "replicate", "huh-base-all", "init-final", "init-init")
COPIES = ("selffer", "selffer_ft", "transfer", "transfer_ft")
VS_TARGET = COPIES + ("random_weights",)
# The paper's names for the treatments
SHORT = {"base": "base", "selffer": "BnB", "selffer_ft": "BnB+", "transfer": "AnB", "transfer_ft": "AnB+",
         "random_weights": "random", "reduced": "reduced", "readout": "readout", "target_ft": "ft",
         "scratch": "scratch"}


@dataclass(frozen=True)
class Pair:
    """`net` compared with `ref` on the validation images of `images` (a net of the plan)."""

    kind: str
    family: str              # the plan family of `net` (random_split, natman, huh2016, ...)
    treatment: str           # of `net`
    net: str
    ref: str
    images: str
    n: int | None
    split: str | None
    net_weights: str = "final"   # "init": the net's random start (init-final, init-init pairs)
    ref_weights: str = "final"

    @property
    def group(self) -> str:
        """The heat map / table a pair belongs to."""
        if self.kind == "base-base":
            return f"baseA vs baseB ({self.family})"
        if self.kind == "vs-target":
            return f"{SHORT[self.treatment]} vs baseB ({self.family})"
        if self.kind == "vs-source":
            return f"{SHORT[self.treatment]} vs baseA ({self.family})"
        if self.kind == "replicate":
            return f"replicates ({self.family})"
        if self.kind == "huh-base-all":
            return "pre-training base vs base-all (huh2016)"
        if self.kind == "init-init":
            return f"baseA vs baseB, both untrained ({self.family})"
        return f"random init vs trained ({self.family})"

    @property
    def row(self) -> str:
        """The row label of the pair inside its group."""
        if self.kind == "init-final":
            return self.ref
        if self.kind in ("vs-target", "vs-source") and self.n is not None:
            return f"n={self.n}: {self.net}"
        if self.kind == "replicate":
            return f"{self.net} ~ {self.ref}"
        return f"{self.net} vs {self.ref}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any]) -> Pair:
        return Pair(**d)


def target_base(plan: Plan, net: Net) -> Net | None:
    """The base net trained on `net`'s target data set (baseB of AnB), if the plan has one."""
    return next((m for m in plan.nets if m.treatment == "base" and m.target == net.target
                 and m.family == net.family), None) or \
        next((m for m in plan.nets if m.treatment == "base" and m.target == net.target), None)


def _pair(kind: str, net: Net, ref: Net, images: Net, weights: str = "final", ref_weights: str = "final") -> Pair:
    return Pair(kind=kind, family=net.family, treatment=net.treatment, net=net.name, ref=ref.name,
                images=images.name, n=net.n, split=net.split, net_weights=weights, ref_weights=ref_weights)


def base_pairs(plan: Plan) -> list[Pair]:
    """baseA vs baseB: the two bases of each (family, split) that has exactly two; the reference is
    the one whose data set other nets transfer to most (ties: plan order, the second)."""
    out = []
    groups: dict[tuple[str, str | None, int], list[Net]] = {}
    for net in plan.nets:
        if net.treatment == "base" and net.family != "huh2016":
            groups.setdefault((net.family, net.split, net.replicate), []).append(net)
    for nets in groups.values():
        if len(nets) == 2:
            a, b = nets
            into = {m.target: sum(1 for x in plan.nets if x.treatment in COPIES and x.target == m.target)
                    for m in nets}
            if into[a.target] > into[b.target]:
                a, b = b, a
            out.append(_pair("base-base", a, b, b))
    return out


def copy_pairs(plan: Plan) -> list[Pair]:
    """Every copying net vs the base of its target (vs-target) and transfer nets vs their source base."""
    out = []
    for net in plan.nets:
        ref = target_base(plan, net) if net.treatment in VS_TARGET else None
        if ref is not None and ref.name != net.name:
            out.append(_pair("vs-target", net, ref, ref))
        source = plan.base_of(net)
        if net.treatment in ("transfer", "transfer_ft") and source is not None:
            out.append(_pair("vs-source", net, source, ref or net))
    return out


def replicate_pairs(plan: Plan) -> list[Pair]:
    """Two replicates of one net (the plan's `replicates`: another random split, or a seeded rerun),
    replicate r against r+1: the noise floor of every other comparison."""
    groups: dict[str, list[Net]] = {}
    for net in plan.nets:
        groups.setdefault(net.group, []).append(net)
    out = []
    for nets in groups.values():
        nets = sorted(nets, key=lambda n: n.replicate)
        out += [_pair("replicate", a, b, a) for a, b in zip(nets, nets[1:])]
    return out


def huh_original(plan: Plan) -> Net | None:
    """The first run of Huh's base on the original set (the plan's whole set)."""
    return next((n for n in plan.nets if n.family in ("huh2016", "whole") and n.treatment == "base"
                 and n.replicate == 0 and plan.datasets[n.target].kind == Kind.WHOLE), None)


def huh_pairs(plan: Plan) -> list[Pair]:
    original = huh_original(plan)
    if original is None:
        return []
    return [_pair("huh-base-all", n, original, original) for n in plan.nets
            if n.family == "huh2016" and n.treatment == "base" and n.name != original.name]


def init_pairs(plan: Plan, pairs: list[Pair]) -> list[Pair]:
    """Each reference base at its random start vs itself trained, and the bases of each base-base pair
    both at their random start, on the images they are compared on."""
    refs = {}
    for p in pairs:
        if p.kind in ("base-base", "vs-target", "huh-base-all") and p.ref == p.images:
            refs.setdefault(p.ref, plan.net(p.ref))
    untrained = [_pair("init-init", plan.net(p.net), plan.net(p.ref), plan.net(p.images), "init", "init")
                 for p in pairs if p.kind == "base-base"]
    return untrained + [_pair("init-final", net, net, net, weights="init") for net in refs.values()]


def plan_pairs(plan: Plan) -> list[Pair]:
    """Every pair of the plan, in display order."""
    pairs = base_pairs(plan) + copy_pairs(plan) + replicate_pairs(plan) + huh_pairs(plan)
    return pairs + init_pairs(plan, pairs)
