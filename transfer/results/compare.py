"""Each published number beside ours: every `Comparison` is built from the typed field it compares with
(no path strings), computed as the paper computed it (Table 1: pooled over nets), with our interval."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from . import published as pub
from .huh_tables import HuhTables
from .stats import Estimate
from .yosinski import Drops, Figure2, RandomWeights, Table1Row


@dataclass(frozen=True)
class Comparison:
    key: str                    # report.json's name for it (the path of the number it compares with)
    published: float
    ours: float | None
    ours_ci95: tuple[float, float] | None
    replicates: str | None      # N behind ours, in words
    source: str

    JSON_EXTRA = ("difference",)

    @property
    def difference(self) -> float | None:
        """Ours minus published."""
        return None if self.ours is None else self.ours - self.published


def _of(key: str, value: float, source: str, e: Estimate | None) -> Comparison:
    return Comparison(key, value, e.mean if e else None, e.ci95 if e else None, e.replicates if e else None, source)


def _table1(t1: Mapping[str, Table1Row]) -> list[Comparison]:
    out = []
    for rng, row in pub.TABLE1.items():
        ours = t1.get(rng)
        cols = {"vs_base": (ours.pooled_vs_base, ours.vs_base),
                "vs_selffer_ft": (ours.pooled_vs_selffer_ft, ours.vs_selffer_ft)} if ours else {}
        for col, value in row.items():
            pooled, paired = cols.get(col, (None, None))
            out.append(Comparison(f"table1.{rng}.{col}", value, pooled, paired.ci95 if paired else None,
                                  paired.replicates if paired else None, f"paper Table 1, layers {rng}"))
    return out


def yosinski(fig2: Figure2 | None, t1: Mapping[str, Table1Row], rw: RandomWeights | None, drops: Drops | None,
             reduced: Mapping[str, Estimate | None]) -> list[Comparison]:
    out = [_of("random_split.baseB.mean", pub.BASE_B_TOP1, "paper 4.1 (1): baseB top-1 0.625",
               fig2.base_b if fig2 else None),
           _of("random_weights.base.mean", pub.WHOLE_TOP1, "paper 4.1 (1): 1000-class top-1 error 42.5%",
               rw.base if rw else None),
           _of("drops_n7.random_split", pub.DROP_N7["random_split"], "paper 4.3: drop at n=7, similar tasks, about 8%",
               drops.random_split if drops else None),
           _of("drops_n7.natman", pub.DROP_N7["natman"], "paper 4.3: drop at n=7, dissimilar tasks, about 25%",
               drops.natman if drops else None)]
    out += _table1(t1)
    out += [_of(f"reduced.{count:04d}.mean", value, f"supplementary Table S1, {count} per class",
                reduced.get(f"{count:04d}")) for count, value in pub.TABLE_S1.items()]
    return out


def huh(h: HuhTables | None) -> list[Comparison]:
    """Huh et al.'s SUN numbers beside the plan's target `sun397` (absent: ours are empty)."""
    t = pub.HUH_TARGET
    row = h.table1.get(t) if h else None
    ours = {"original": row.original, "coarse": row.coarse, "random": row.random} if row else {}
    out = [_of(f"huh2016.table1.{t}.{name}", value, f"Huh et al. 2016 Table 1, SUN, {name}", ours.get(name))
           for name, value in pub.HUH_TABLE1_SUN.items()]
    budgets = h.table2.get(t, {}) if h else {}
    for total, cols in pub.HUH_TABLE2_SUN.items():
        got = budgets.get(str(total))
        ways = {"classes": got.classes, "images": got.images} if got else {}
        for way, value in cols.items():
            out.append(_of(f"huh2016.table2.{t}.{total}.{way}", value,
                           f"Huh et al. 2016 Table 2, SUN, {total:,} images as fewer {way}", ways.get(way)))
    out.append(_of(f"huh2016.change486.{t}", pub.HUH_CHANGE_486_SUN, "Huh et al. 2016 section 5.1: 486 classes, SUN",
                   h.change486.get(t) if h else None))
    return out
