"""What the analysis shows, in sentences that follow its numbers and intervals (and say where they
cannot decide): the checks, generality, fine-tuning, co-adaptation, movement, noise and scale."""
from __future__ import annotations

import math

from .result import AnalysisResult, Row, Stat
from .summary import move_rows

EXACT = 1e-6   # a frozen layer's CKA with its source may differ from 1 by rounding only


def _ok(s: Stat | None) -> bool:
    return s is not None and s.mean is not None and math.isfinite(s.mean)


def _row(res: AnalysisResult, group: str, n: int | None = None) -> Row | None:
    g = res.group(group)
    if g is None:
        return None
    return next((r for r in g.rows if r.n == n), None) if n is not None else (g.rows[0] if g.rows else None)


def frozen_check(res: AnalysisResult) -> str | None:
    """Frozen copied layers must compute what their source computes (CKA 1) and not move (0)."""
    vals = [pr.cka[l] for pr in res.pairs if pr.pair.treatment in ("transfer", "selffer")
            and pr.pair.kind in ("vs-source", "vs-target") and (pr.pair.kind == "vs-source" or
                                                               pr.pair.treatment == "selffer")
            for l in res.layers[:pr.pair.n or 0]]
    moved = [m.from_init[l] for m in res.movement if m.frozen for l in res.layers[:m.frozen]]
    if not vals:
        return None
    bad = [v for v in vals if v is None or abs(v - 1) > EXACT] + [v for v in moved if v != 0]
    what = (f"frozen copied layers against the net they were copied from: CKA {min(vals):.6f} to {max(vals):.6f} "
            f"over {len(vals)} layer comparisons; weight movement of frozen layers at most "
            f"{max(moved, default=0.0):.1g}")
    if bad:
        return f"**Check failed**: {what}. A frozen layer must compute exactly what its source does."
    return f"Check passed: {what} (a check of the measurement, not a finding)."


def generality(res: AnalysisResult, family: str) -> str | None:
    """baseA vs baseB layer by layer, against the same two nets before training (the null)."""
    base = _row(res, f"baseA vs baseB ({family})")
    null = _row(res, f"baseA vs baseB, both untrained ({family})")
    changed = _row(res, f"random init vs trained ({family})")
    first, last = res.layers[0], res.layers[-2]
    if base is None or not (_ok(base.layers[first]) and _ok(base.layers[last])):
        return None
    text = (f"Generality, measured directly ({family}): baseA and baseB, trained on different classes, have CKA "
            f"{_fmt(base.layers[first])} at {first} and {_fmt(base.layers[last])} at {last} "
            f"({_fmt(base.layers[res.layers[-1]])} at {res.layers[-1]}, the logits of different classes).")
    if null is not None and _ok(null.layers[first]):
        above = [l for l in res.layers if _ok(base.layers[l]) and _ok(null.layers[l])
                 and _above(base.layers[l], null.layers[l])]
        below = [l for l in res.layers if _ok(base.layers[l]) and _ok(null.layers[l])
                 and _above(null.layers[l], base.layers[l])]
        text += (f" Before training the same two nets have {_fmt(null.layers[first])} at {first} and "
                 f"{_fmt(null.layers[last])} at {last}: that much comes from the architecture and the images alone.")
        text += (" Trained, they are more alike than untrained beyond both intervals at "
                 f"{', '.join(above) or 'no layer'}"
                 + (f", less alike at {', '.join(below)}" if below else "") + ".")
    if changed is not None and _ok(changed.layers[first]):
        text += (f" Training moved the reference base{'s' if _n(changed) > 1 else ''} to CKA "
                 f"{_fmt(changed.layers[first])} with {'their' if _n(changed) > 1 else 'its'} start at {first} "
                 f"and {_fmt(changed.layers[last])} at {last}.")
    return text


def _n(row: Row) -> int:
    return max((s.count for s in row.layers.values()), default=0)


def _above(a: Stat, b: Stat) -> bool:
    """a is above b beyond both intervals (point estimates where there are none)."""
    lo_a = a.lo if a.lo is not None else a.mean
    hi_b = b.hi if b.hi is not None else b.mean
    return lo_a > hi_b


def _fmt(s: Stat | None) -> str:
    if not _ok(s):
        return "—"
    ci = f" [{s.lo:.2f}, {s.hi:.2f}]" if s.lo is not None else ""
    return f"{s.mean:.2f}{ci}"


def finetuning(res: AnalysisResult, family: str) -> str | None:
    """Does fine-tuning move AnB+'s copied layer n towards baseB (compared with frozen AnB at n, which
    is baseA there)? Closer or farther only where the two intervals do not overlap."""
    moved: dict[int, tuple[float, str]] = {}
    for n in range(1, 8):
        ft, frozen = _row(res, f"AnB+ vs baseB ({family})", n), _row(res, f"AnB vs baseB ({family})", n)
        if ft and frozen and _ok(ft.layers[res.layers[n - 1]]) and _ok(frozen.layers[res.layers[n - 1]]):
            a, b = ft.layers[res.layers[n - 1]], frozen.layers[res.layers[n - 1]]
            moved[n] = (a.mean - b.mean, "closer" if _above(a, b) else "farther" if _above(b, a) else "unclear")
    if not moved:
        return None
    closer = [n for n, (_, how) in moved.items() if how == "closer"]
    farther = [n for n, (_, how) in moved.items() if how == "farther"]
    return (f"Fine-tuning ({family}): at the last copied layer n, CKA with baseB of AnB+ minus that of AnB "
            "(which is baseA's there): " + ", ".join(f"n={n} {d:+.2f}" for n, (d, _) in moved.items())
            + f". Beyond both intervals, AnB+ is closer to baseB at n = {_list(closer)} and farther at n = "
            f"{_list(farther)}" + ("; elsewhere the intervals overlap." if len(closer) + len(farther) < len(moved)
                                   else ".") + _single(res, f"AnB+ vs baseB ({family})"))


def _list(ns: list[int]) -> str:
    return ", ".join(map(str, ns)) if ns else "none"


def coadaptation(res: AnalysisResult, family: str) -> str | None:
    """Fragile co-adaptation (the paper's reading of BnB): is BnB's first relearned layer furthest from
    baseB's for middle n (3-5)?"""
    vals = {}
    for n in range(1, 8):
        row = _row(res, f"BnB vs baseB ({family})", n)
        if row and _ok(row.layers[res.layers[n]] if n < len(res.layers) else None):
            vals[n] = row.layers[res.layers[n]]
    if len(vals) < 3:
        return None
    mid = [vals[n].mean for n in (3, 4, 5) if n in vals]
    ends = [vals[n].mean for n in (1, 2, 6, 7) if n in vals]
    text = ("Co-adaptation (" + family + "): BnB's first layer trained anew (n+1) has CKA with baseB's "
            + ", ".join(f"n={n} {v.mean:.2f}" for n, v in vals.items()) + ".")
    if mid and ends:
        lower = max(mid) < min(ends)
        text += (f" The middle (n = 3-5, at most {max(mid):.2f}) is {'below' if lower else 'not below'} both ends "
                 f"(at least {min(ends):.2f}), {'as' if lower else 'unlike what'} the paper's fragile co-adaptation "
                 "would predict if it showed in the representation.")
    return text + _single(res, f"BnB vs baseB ({family})")


def _single(res: AnalysisResult, group: str) -> str:
    g = res.group(group)
    if g and all(max(s.count for s in r.layers.values()) <= 1 for r in g.rows):
        return (" One net per n, and its interval covers only the images drawn: without replicates this "
                "cannot be told from run-to-run noise.")
    return ""


def movement(res: AnalysisResult) -> list[str]:
    """Per fine-tuned treatment: how far its copied layers moved, the lowest (conv1, conv2) against the
    higher copied layers of the same rows."""
    out = []
    for name, rows in move_rows(res.movement, res.layers, res.settings["resamples"], res.settings["seed"]).items():
        ft = [r for r in rows if r.frozen < r.copied]
        copied = {l: [r.layers[l].mean for r in ft if i < r.copied and r.layers[l].mean is not None]
                  for i, l in enumerate(res.layers)}
        means = {l: sum(v) / len(v) for l, v in copied.items() if v}
        fresh = [r.layers[l].mean for r in ft for i, l in enumerate(res.layers)
                 if i >= r.copied and r.layers[l].mean is not None]
        if not means or not fresh:
            continue
        text = (f"Movement, {name}: copied layers moved {', '.join(f'{l} {v:.3f}' for l, v in means.items())} "
                f"(mean over the n that copy them); fresh layers, trained from random weights, "
                f"{min(fresh):.2f} to {max(fresh):.2f}.")
        both = [(_mean([r.layers[l].mean for l in res.layers[:2]]),
                 _mean([r.layers[l].mean for l in res.layers[2:r.copied]])) for r in ft if r.copied >= 3]
        both = [(lo, hi) for lo, hi in both if lo is not None and hi is not None]
        if both:
            less = sum(1 for lo, hi in both if lo < hi)
            text += (f" In {less} of {len(both)} rows with n >= 3 the lowest copied layers (conv1, conv2) moved "
                     "less than the higher copied ones"
                     + (" (Neyshabur et al. 2020 found lower layers move less)." if 2 * less > len(both) else
                        ", unlike Neyshabur et al. 2020, who found lower layers move less."))
        out.append(text)
    return out


def _mean(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def noise_and_scale(res: AnalysisResult) -> list[str]:
    reps = [g for g in res.groups if g.kind == "replicate"]
    out = []
    if reps:
        fc7 = [r.layers[res.layers[-2]] for g in reps for r in g.rows if _ok(r.layers[res.layers[-2]])]
        if fc7:
            out.append(f"Noise floor: nets made the same way on another random split reach CKA "
                       f"{min(s.mean for s in fc7):.2f} to {max(s.mean for s in fc7):.2f} with each other at "
                       f"{res.layers[-2]}; differences between treatments smaller than that gap are not evidence.")
    else:
        out.append("No replicates: each number rests on one pair of trained nets, and the intervals over image "
                   "batches leave out how another training run would differ.")
    if res.plan != "paper":
        out.append(f"Plan `{res.plan}` is far smaller than the paper's ImageNet nets (fewer classes, smaller "
                   "images and widths, short schedules): the pattern across layers can be compared with the "
                   "paper's reading, the levels cannot.")
    return out


def verdicts(res: AnalysisResult) -> list[str]:
    fams = list(dict.fromkeys(g.family for g in res.groups))
    lines = [frozen_check(res)]
    for fam in fams:
        lines += [generality(res, fam), finetuning(res, fam), coadaptation(res, fam)]
    lines += movement(res) + noise_and_scale(res)
    return [line for line in lines if line]
