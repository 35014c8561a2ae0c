"""Does the paper's pattern show? Each pattern is a difference with its 95% interval over replicates:
"yes" when the interval excludes zero in the paper's direction, "no" when it excludes zero the other way,
else "not resolved at this size (N replicates)" (stats.decide). Every verdict names its numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from . import stats, yosinski as y
from .counted import Numbers
from .huh_tables import HuhTables
from .stats import Estimate


@dataclass(frozen=True)
class Verdict:
    key: str
    pattern: str            # the paper's pattern, as a claim
    difference: Estimate | None
    what: str               # what the difference is
    direction: int          # the paper's sign of it: +1 above zero, -1 below
    paper: str              # what the paper found
    caution: str = ""       # nets behind it that were still improving at their last test

    JSON_EXTRA = ("answer", "verdict", "detail")

    @property
    def answer(self) -> str:
        """yes | no | not resolved | no data."""
        return stats.decide(self.difference, self.direction)

    @property
    def verdict(self) -> str:
        """The answer in words ("not resolved at this size (3 splits)")."""
        return stats.answer_text(self.answer, self.difference)

    @property
    def detail(self) -> str:
        if self.difference is None:
            return f"{self.what}: no data in this plan's counted nets; paper: {self.paper}"
        text = f"{self.what} = {self.difference.text(signed=True)}; paper: {self.paper}"
        return text + (f". Caution: {self.caution}" if self.caution else "")

    def line(self) -> str:
        return f"{self.pattern}: {self.verdict} — {self.detail}"


def _caution(est: Estimate | None, improving: Mapping[str, bool], base_of: Mapping[str, str | None]) -> str:
    """Which nets behind a verdict, or the bases they copy from, were still improving when they stopped (a
    base still climbing makes every comparison with it favour the net trained longer on top of it)."""
    if est is None:
        return ""
    behind: list[str] = []
    for name in est.nets:
        while name and name not in behind:
            behind.append(name)
            name = base_of.get(name) or ""
    still = [n for n in behind if improving.get(n)]
    if not still:
        return ""
    shown = ", ".join(f"`{n}`" for n in still[:6]) + (f" and {len(still) - 6} more" if len(still) > 6 else "")
    return f"{len(still)} of its nets or their bases were still improving at their last tests ({shown})"


def yosinski(d: Numbers, t1: Mapping[str, y.Table1Row], drops: y.Drops,
             improving: Mapping[str, bool]) -> list[Verdict]:
    """The first paper's patterns, in the order of its Figure 2 notes and Figure 3; those whose families
    the plan lacks are left out."""
    rw_past = stats.combine([(1.0, d.sample(lambda n: n.family == "random_weights" and n.n in y.PAST_2)),
                             (-1.0, d.sample(lambda n: n.family == "whole"))])
    nm_vs_rs = (stats.independent([(1.0, drops.natman), (-1.0, drops.random_split)])
                if drops.natman and drops.random_split else None)
    row = t1["1-7"]
    found = [
        ("anb_drops_at_high_n", "AnB falls at high n (representation specificity)", y.vs_base_b(d, "transfer", y.HIGH_N),
         "AnB at n = 6-7 minus baseB", -1, "about -0.08 at n = 7 (Figure 2)"),
        ("bnb_dips_in_middle", "BnB dips below baseB in the middle layers (fragile co-adaptation)",
         y.vs_base_b(d, "selffer", y.MIDDLE_N), "BnB at n = 3-5 minus baseB", -1,
         "below baseB at n = 3-5, lowest near n = 4-5 (Figure 2)"),
        ("bnb_ft_recovers", "fine-tuning recovers the co-adapted interactions (BnB+ above BnB in the middle)",
         stats.combine([(1.0, d.sample(y.rs_of("selffer_ft", y.MIDDLE_N))),
                        (-1.0, d.sample(y.rs_of("selffer", y.MIDDLE_N)))]),
         "BnB+ minus BnB at n = 3-5", +1, "BnB+ back at baseB's level at every n (Figure 2)"),
        ("anb_ft_at_or_above_base", "AnB+ above baseB (transfer and fine-tuning improve generalisation)",
         row.vs_base, "AnB+ (n = 1-7) minus baseB", +1, "+1.6% (Table 1)"),
        ("anb_ft_above_bnb_ft", "AnB+ above BnB+", row.vs_selffer_ft, "AnB+ (n = 1-7) minus BnB+", +1,
         "+1.4% (Table 1)"),
        ("natman_drops_more", "man-made/natural transfer drops more at n = 7 than the random split",
         nm_vs_rs, "drop at n = 7, man-made/natural minus random split", +1, "about 25% vs 8% (section 4.3)"),
        ("random_weights_far_worse", "random weights far worse past layers 1-2", rw_past,
         "random weights at n = 3-7 minus the base on every class", -1,
         "near chance from n = 3 on (Figure 3)"),
    ]
    fams = {n.family for n in d.plan.nets}
    base_of = {n.name: n.base for n in d.plan.nets}
    return [Verdict(k, p, e, w, s, paper, _caution(e, improving, base_of)) for k, p, e, w, s, paper in found
            if NEEDS[k] <= fams]


NEEDS = {"anb_drops_at_high_n": {"random_split"}, "bnb_dips_in_middle": {"random_split"},
         "bnb_ft_recovers": {"random_split"}, "anb_ft_at_or_above_base": {"random_split"},
         "anb_ft_above_bnb_ft": {"random_split"}, "natman_drops_more": {"random_split", "natman"},
         "random_weights_far_worse": {"whole", "random_weights"}}


def captions_shown(verdicts: Sequence[Verdict]) -> set[str]:
    """Figure 2's numbered interpretations whose pattern shows: 2 when BnB dips, 3 when it dips and
    fine-tuning recovers it, 4 when AnB falls, 5 when AnB+ beats baseB (1 labels baseB: always)."""
    yes = {v.key for v in verdicts if v.answer == stats.YES}
    shown = {"baseB"}
    if "bnb_dips_in_middle" in yes:
        shown.add("BnB")
        if "bnb_ft_recovers" in yes:
            shown.add("BnB+")
    if "anb_drops_at_high_n" in yes:
        shown.add("AnB")
    if "anb_ft_at_or_above_base" in yes:
        shown.add("AnB+")
    return shown


def huh(h: HuhTables, improving: Mapping[str, bool], base_of: Mapping[str, str | None],
        scratch: Sequence[str]) -> list[Verdict]:
    """Huh et al.'s patterns, per target data set (`base_of`: net name -> the net it copies from; `scratch`:
    the targets the plan trains from scratch). A pattern the plan has no nets for is left out."""
    kinds = {s.kind for s in h.sets.values()}
    out = []
    for t in h.targets:
        has = {"pretraining_beats_scratch": t in scratch, "fewer_classes_not_worse": bool(h.table2[t]),
               "fewer_images_hurt_mildly": "images" in kinds}
        for key, pattern, est, what, sign, paper in (
            ("pretraining_beats_scratch", "pre-training beats training from scratch", h.pretrain_vs_scratch(t),
             "fine-tuned from the original set minus from scratch", +1, "52.2 vs 35.7 on SUN (Table 1)"),
            ("fewer_classes_not_worse", "fewer classes (more images each) at or above fewer images per class",
             h.classes_vs_images(t), "fewer classes minus fewer images, same image budget, mean over budgets", +1,
             "slightly better on PASCAL DET, comparable on SUN: +0.9, -1.0, -0.1 (Table 2)"),
            ("fewer_images_hurt_mildly", "fewer images per class hurt (mildly)", h.fewer_images_vs_original(t),
             "fewer images per class minus every image, mean over the per-class budgets", -1,
             "a marginal drop: 58.3, 57.0, 54.6 mAP on PASCAL DET for 1000, 500, 250 per class (section 4.1)"),
        ):
            if not has[key]:
                continue
            out.append(Verdict(f"{key}:{t}", f"{pattern} (target `{t}`)", est, what, sign, paper,
                               _caution(est, improving, base_of)))
    return out
