"""The paper's numbers from per-net logs: the per-net metric, the pooled treatment means of
Figures 2 and 3, Table 1 (with a bootstrap interval), Table S1, and the qualitative checks.

Everything here works on plain data (plan Nets and NetLogs in, JSON-able dicts out), so a
report can be rebuilt from report.json and the tests can feed numbers computed by hand.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .logs import NetLog
from .plan import Net

TOP_K = 10  # the paper's number for a net: mean of its 10 highest validation accuracies (a plan's `top_k`)
NS = range(1, 8)
# Figure 2's names for the random-split treatments (AnA pools with BnB, BnA with AnB).
FIG2 = {"selffer": "BnB", "selffer_ft": "BnB+", "transfer": "AnB", "transfer_ft": "AnB+"}
TABLE1_RANGES = {"1-7": (1, 7), "3-7": (3, 7), "5-7": (5, 7)}


@dataclass(frozen=True)
class NetMetric:
    metric: float       # mean of the top-k validation accuracies (fewer if fewer tests)
    final: float        # accuracy at the last test
    best: float
    iterations: int     # last iteration the logs reach
    tests: int          # validation tests seen
    attempts: int       # log files


def net_metric(log: NetLog, k: int = TOP_K) -> NetMetric | None:
    """The per-net numbers, or None when the logs hold no validation test."""
    if not log.val_accuracy:
        return None
    its, acc = log.series("val_accuracy")
    finite = acc[np.isfinite(acc)]
    if finite.size == 0:
        return None
    top = np.sort(finite)[-k:]
    return NetMetric(metric=float(top.mean()), final=float(acc[-1]), best=float(finite.max()),
                     iterations=int(log.last_iteration or its[-1]), tests=int(acc.size),
                     attempts=log.attempts)


def stats(points: Sequence[float], nets: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Mean and spread of the points behind one plotted mean; None when there are none."""
    if len(points) == 0:
        return None
    a = np.asarray(points, dtype=float)
    out: dict[str, Any] = {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
                           "min": float(a.min()), "max": float(a.max()), "count": int(a.size),
                           "points": [float(x) for x in a]}
    if nets is not None:
        out["nets"] = list(nets)
    return out


def _group(nets: Iterable[Net], metrics: dict[str, NetMetric]) -> dict[str, Any] | None:
    have = [n for n in nets if n.name in metrics]
    return stats([metrics[n.name].metric for n in have], [n.name for n in have])


def _mean(s: dict[str, Any] | None) -> float | None:
    return None if s is None else s["mean"]


# ------------------------------------------------------------------------------ random split

def base_b_nets(nets: Sequence[Net]) -> list[Net]:
    """The paper's baseB points: base nets of the random halves that some transfer/selffer net
    targets (every half in the paper's plan, so eight points; half0B alone in the small plan)."""
    rs = [n for n in nets if n.family == "random_split"]
    targets = {n.target for n in rs if n.treatment != "base"}
    bases = [n for n in rs if n.treatment == "base"]
    return [n for n in bases if n.target in targets] if targets else bases


def random_split(nets: Sequence[Net], metrics: dict[str, NetMetric]) -> dict[str, Any]:
    rs = [n for n in nets if n.family == "random_split"]
    out: dict[str, Any] = {"baseB": _group(base_b_nets(nets), metrics)}
    for treatment, label in FIG2.items():
        out[label] = {str(n): _group([x for x in rs if x.treatment == treatment and x.n == n], metrics)
                      for n in NS}
    return out


def _points(nets: Sequence[Net], metrics: dict[str, NetMetric], treatment: str, lo: int, hi: int) -> list[float]:
    return [metrics[n.name].metric for n in nets if n.family == "random_split" and n.treatment == treatment
            and n.n is not None and lo <= n.n <= hi and n.name in metrics]


def table1_from_points(anb_ft: Sequence[float], base: Sequence[float], bnb_ft: Sequence[float],
                       resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Table 1 for one layer range: mean(AnB+) - mean(baseB) and mean(AnB+) - mean(BnB+),
    pooled over points; each with a bootstrap 95% interval (points resampled within groups)."""
    a, b, s = (np.asarray(x, dtype=float) for x in (anb_ft, base, bnb_ft))
    out: dict[str, Any] = {"vs_base": None, "vs_selffer_ft": None, "vs_base_ci95": None,
                           "vs_selffer_ft_ci95": None, "count_anb_ft": int(a.size),
                           "count_base": int(b.size), "count_bnb_ft": int(s.size)}
    if a.size == 0:
        return out
    rng = np.random.default_rng(seed)
    boot_a = rng.choice(a, size=(resamples, a.size)).mean(axis=1)
    for key, ctrl in (("vs_base", b), ("vs_selffer_ft", s)):
        if ctrl.size == 0:
            continue
        out[key] = float(a.mean() - ctrl.mean())
        diff = boot_a - rng.choice(ctrl, size=(resamples, ctrl.size)).mean(axis=1)
        lo, hi = np.percentile(diff, [2.5, 97.5])
        out[key + "_ci95"] = [float(lo), float(hi)]
    return out


def table1(nets: Sequence[Net], metrics: dict[str, NetMetric], resamples: int = 2000,
           seed: int = 0) -> dict[str, Any]:
    base = [metrics[n.name].metric for n in base_b_nets(nets) if n.name in metrics]
    return {rng: table1_from_points(_points(nets, metrics, "transfer_ft", lo, hi), base,
                                    _points(nets, metrics, "selffer_ft", lo, hi), resamples, seed)
            for rng, (lo, hi) in TABLE1_RANGES.items()}


# ------------------------------------------------------------------------------ Figure 3, S1

def natman(nets: Sequence[Net], metrics: dict[str, NetMetric]) -> dict[str, Any]:
    nm = [n for n in nets if n.family == "natman"]
    out: dict[str, Any] = {"base": {}, "transfer": {}, "normalized": {}}
    for target in ("manmade", "natural"):
        base = _group([n for n in nm if n.treatment == "base" and n.target == target], metrics)
        out["base"][target] = base
        out["transfer"][target] = {}
        out["normalized"][target] = {}
        for n in NS:
            g = _group([x for x in nm if x.treatment == "transfer" and x.target == target and x.n == n], metrics)
            out["transfer"][target][str(n)] = g
            # Figure 3 bottom: each point minus the base of its own target task
            out["normalized"][target][str(n)] = (
                stats([p - base["mean"] for p in g["points"]], g["nets"]) if g and base else None)
    return out


def random_weights(nets: Sequence[Net], metrics: dict[str, NetMetric]) -> dict[str, Any]:
    out: dict[str, Any] = {"base": _group([n for n in nets if n.family == "whole"], metrics)}
    for n in NS:
        out[str(n)] = _group([x for x in nets if x.family == "random_weights" and x.n == n], metrics)
    out["normalized"] = {str(n): (stats([p - out["base"]["mean"] for p in out[str(n)]["points"]],
                                        out[str(n)]["nets"]) if out[str(n)] and out["base"] else None)
                         for n in NS}
    return out


def reduced(nets: Sequence[Net], metrics: dict[str, NetMetric]) -> dict[str, Any]:
    """Table S1: accuracy by images per class, keyed like the released names ('1300', '0100')."""
    return {n.name.rsplit("-", 1)[-1]: _group([n], metrics) for n in nets if n.family == "reduced"}


def random_split_normalized(rs: dict[str, Any]) -> dict[str, Any]:
    """AnB minus the baseB mean, per n (Figure 3 bottom, red diamonds)."""
    base = _mean(rs.get("baseB"))
    out = {}
    for n in NS:
        g = rs["AnB"][str(n)]
        out[str(n)] = stats([p - base for p in g["points"]], g["nets"]) if g and base is not None else None
    return out


def drops_n7(rs: dict[str, Any], nm: dict[str, Any]) -> dict[str, Any]:
    """Frozen-transfer drop at n=7 below the base (positive = worse than base), as the paper
    quotes it: about 8% for the random split and 25% for man-made/natural."""
    anb7, base = rs["AnB"]["7"], _mean(rs["baseB"])
    pts = [p for t in ("manmade", "natural") if nm["normalized"].get(t, {}).get("7")
           for p in nm["normalized"][t]["7"]["points"]]
    return {"random_split": (base - anb7["mean"]) if anb7 and base is not None else None,
            "natman": -float(np.mean(pts)) if pts else None}


# ------------------------------------------------------------------------------ qualitative

def _m(rs: dict[str, Any], label: str, n: int) -> float | None:
    return _mean(rs[label][str(n)])


def _anb_drops(rs: dict[str, Any], base: float | None) -> dict[str, Any]:
    hi = [v for v in (_m(rs, "AnB", 6), _m(rs, "AnB", 7)) if v is not None]
    if base is None or not hi:
        return {"holds": None, "detail": "needs baseB and AnB at n=6 or 7"}
    v = float(np.mean(hi))
    return {"holds": bool(v < base),
            "detail": f"AnB mean at n=6-7 {v:.4f} vs baseB {base:.4f} (difference {v - base:+.4f}); "
                      f"paper: clearly below (about -0.08 at n=7)"}


def _bnb_dips(rs: dict[str, Any], base: float | None) -> dict[str, Any]:
    mid = {n: _m(rs, "BnB", n) for n in (3, 4, 5)}
    mid = {n: v for n, v in mid.items() if v is not None}
    b1, b7 = _m(rs, "BnB", 1), _m(rs, "BnB", 7)
    if base is None or not mid or b1 is None or b7 is None:
        return {"holds": None, "detail": "needs baseB and BnB at n=1, 7 and some of 3-5"}
    n_min = min(mid, key=mid.get)
    v = mid[n_min]
    return {"holds": bool(v < base and v < b1 and v < b7),
            "detail": f"min BnB over n=3-5 is {v:.4f} at n={n_min}; baseB {base:.4f}, "
                      f"BnB n=1 {b1:.4f}, n=7 {b7:.4f}"}


def _anb_ft_boost(t1: dict[str, Any]) -> dict[str, Any]:
    boost = t1.get("1-7", {}).get("vs_base")
    if boost is None:
        return {"holds": None, "detail": "needs AnB+ nets and baseB"}
    ci = t1["1-7"].get("vs_base_ci95")
    return {"holds": bool(boost >= 0),
            "detail": f"mean AnB+ (n=1-7) minus baseB = {boost:+.4f}"
                      + (f" (bootstrap 95% [{ci[0]:+.4f}, {ci[1]:+.4f}])" if ci else "") + "; paper: +0.016"}


def _natman_drops(drops: dict[str, Any]) -> dict[str, Any]:
    r, nm = drops.get("random_split"), drops.get("natman")
    if r is None or nm is None:
        return {"holds": None, "detail": "needs AnB and man-made/natural transfer at n=7"}
    return {"holds": bool(nm > r),
            "detail": f"drop at n=7: random split {r:.4f}, man-made/natural {nm:.4f}; paper: 0.08 vs 0.25"}


def qualitative(rs: dict[str, Any], t1: dict[str, Any], drops: dict[str, Any]) -> dict[str, Any]:
    """Whether the paper's pattern shows, stated either way; holds=None when data are lacking."""
    base = _mean(rs["baseB"])
    return {"anb_drops_at_high_n": _anb_drops(rs, base), "bnb_dips_in_middle": _bnb_dips(rs, base),
            "anb_ft_at_or_above_base": _anb_ft_boost(t1), "natman_drops_more": _natman_drops(drops)}


def metric_dict(m: NetMetric) -> dict[str, Any]:
    """JSON-safe: a diverged run's NaN final accuracy becomes null."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(m).items()}
