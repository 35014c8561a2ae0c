"""Pair results pooled into groups and rows (a heat map's rows), each layer a mean with its interval."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .movement import Movement
from .pairs import SHORT, Pair
from .result import Group, PairResult, Row, Stat
from .stats import mean_interval


def row_key(pair: Pair) -> tuple[int, str, int | None]:
    """(sort key, label, n) of the row a pair is pooled into within its group."""
    if pair.kind in ("vs-target", "vs-source"):
        return pair.n or 0, f"n={pair.n}", pair.n
    if pair.kind == "base-base":
        return 0, "baseA vs baseB", None
    if pair.kind == "replicate":
        label = SHORT.get(pair.treatment, pair.treatment) + (f" n={pair.n}" if pair.n else "")
        return pair.n or 0, label, pair.n
    if pair.kind == "huh-base-all":
        return 0, pair.net, None
    if pair.kind == "init-init":
        return 0, "baseA vs baseB, both at their random start", None
    return 0, "base at its random start vs trained", None


def stat(results: list[PairResult], layer: str, resamples: int, seed: int) -> Stat:
    """The mean over pairs with a 95% bootstrap interval over them (two or more), else the one pair's
    value with its interval over images."""
    vals = [r.cka[layer] for r in results if r.cka[layer] is not None and math.isfinite(r.cka[layer])]
    if not vals:
        return Stat(None, None, None, 0, None)
    if len(vals) == 1:
        one = next(r for r in results if r.cka[layer] is not None and math.isfinite(r.cka[layer]))
        ci = one.ci_images.get(layer)
        return Stat(vals[0], ci[0] if ci else None, ci[1] if ci else None, 1, "images" if ci else None)
    ci = mean_interval(vals, resamples, seed)
    return Stat(sum(vals) / len(vals), ci[0] if ci else None, ci[1] if ci else None, len(vals), "nets")


def groups(results: list[PairResult], layers: list[str], resamples: int, seed: int) -> list[Group]:
    """Every group (in order of first appearance) with its rows (sorted by n)."""
    by_group: dict[str, list[PairResult]] = {}
    for r in results:
        by_group.setdefault(r.pair.group, []).append(r)
    out = []
    families = list(dict.fromkeys(r.pair.family for r in results))
    kinds = ["base-base", "init-init", "init-final", "replicate", "vs-target", "vs-source", "huh-base-all"]
    treatments = list(SHORT)
    order = sorted(by_group, key=lambda g: (families.index(by_group[g][0].pair.family),
                                            kinds.index(by_group[g][0].pair.kind),
                                            treatments.index(by_group[g][0].pair.treatment)
                                            if by_group[g][0].pair.treatment in treatments else 99))
    for name in order:
        members = by_group[name]
        rows: dict[str, list[PairResult]] = {}
        keys: dict[str, tuple[int, str, int | None]] = {}
        for r in members:
            key = row_key(r.pair)
            rows.setdefault(key[1], []).append(r)
            keys[key[1]] = key
        built = [Row(label=label, n=keys[label][2], pairs=[f"{r.pair.net} vs {r.pair.ref}" for r in rs],
                     layers={l: stat(rs, l, resamples, seed) for l in layers})
                 for label, rs in sorted(rows.items(), key=lambda kv: keys[kv[0]][:2])]
        first = members[0].pair
        out.append(Group(name=name, kind=first.kind, family=first.family, treatment=first.treatment, rows=built))
    return out


@dataclass(frozen=True)
class MoveRow:
    """The weight movement of the nets of one (family, treatment, n), per layer over those nets."""

    label: str
    n: int | None
    copied: int
    frozen: int
    nets: list[str]
    layers: dict[str, Stat]


def move_rows(moves: list[Movement], layers: list[str], resamples: int, seed: int) -> dict[str, list[MoveRow]]:
    """Movement from the start (from_init) pooled by treatment: panel name -> rows by n."""
    pooled: dict[tuple[str, str], dict[int | None, list[Movement]]] = {}
    for m in moves:
        key = (m.treatment, m.family)
        pooled.setdefault(key, {}).setdefault(m.n, []).append(m)
    out = {}
    for (treatment, family), by_n in pooled.items():
        rows = []
        for n, ms in sorted(by_n.items(), key=lambda kv: kv[0] or 0):
            stats = {}
            for l in layers:
                vals = [m.from_init[l] for m in ms if m.from_init[l] is not None and math.isfinite(m.from_init[l])]
                ci = mean_interval(vals, resamples, seed)
                stats[l] = Stat(sum(vals) / len(vals) if vals else None, ci[0] if ci else None,
                                ci[1] if ci else None, len(vals), "nets" if ci else None)
            rows.append(MoveRow(label=f"n={n}" + (f" (N={len(ms)})" if len(ms) > 1 else ""), n=n,
                                copied=ms[0].copied, frozen=ms[0].frozen, nets=[m.net for m in ms], layers=stats))
        out[f"{SHORT.get(treatment, treatment)} ({family})"] = rows
    return out
