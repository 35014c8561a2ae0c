"""The nets a report counts and their numbers, and what a replicate of each net is.

A random-split net's replicate is its split (the paper's four splits are its replicates, and further
`replicates` draw further splits); any other net's is its `Net.replicate` (the plan's seeded runs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from . import stats
from .stats import Estimate, Sample
from ..plan.model import Net, Plan


def unit_of(net: Net) -> tuple[str, str]:
    """(unit, kind): a random-split net's split seed ("split"), else its replicate index ("replicate")."""
    if net.family == "random_split":
        return str(net.split), "split"
    return str(net.replicate), "replicate"


@dataclass(frozen=True)
class Numbers:
    """The counted nets of a plan and one number each (not serialised: the report's working set)."""

    plan: Plan
    values: Mapping[str, float]     # net name -> its number, counted nets only

    def sample(self, keep: Callable[[Net], bool]) -> Sample | None:
        """Per-replicate means of the counted nets `keep` selects."""
        nets = [n for n in self.plan.nets if keep(n) and n.name in self.values]
        if not nets:
            return None
        return stats.sample(((unit_of(n)[0], n.name, self.values[n.name]) for n in nets), unit_of(nets[0])[1])

    def level(self, keep: Callable[[Net], bool]) -> Estimate | None:
        return stats.level(self.sample(keep))
