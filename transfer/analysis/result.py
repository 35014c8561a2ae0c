"""The analysis as typed objects, and analysis.json (what the figures, the report section and the
notebook read). NaN (a layer without variance over the images: CKA undefined) is written as null."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import TransferError
from ..core.files import atomic_write, shown
from .movement import Movement
from .pairs import Pair

FILE = "analysis.json"
FORMAT = 1


@dataclass(frozen=True)
class Stat:
    """A number with its 95% interval: over `count` nets (interval "nets"), or, for one pair, over
    the minibatches of images (interval "images"); lo/hi None when there is none."""

    mean: float | None
    lo: float | None
    hi: float | None
    count: int
    interval: str | None


@dataclass(frozen=True)
class PairResult:
    pair: Pair
    cka: dict[str, float | None]                       # layer -> minibatch CKA
    ci_images: dict[str, tuple[float, float] | None]   # layer -> bootstrap over batches
    image_set: str                                     # key of AnalysisResult.image_sets


@dataclass(frozen=True)
class Row:
    """One row of a group: the pairs pooled into it, and per layer their mean and interval."""

    label: str
    n: int | None
    pairs: list[str]            # "net vs ref" of each pair pooled
    layers: dict[str, Stat]


@dataclass(frozen=True)
class Group:
    name: str
    kind: str
    family: str
    treatment: str
    rows: list[Row]


@dataclass
class AnalysisResult:
    plan: str
    generated: str
    settings: dict[str, Any]           # images, batch, seed, resamples, device, representation
    layers: list[str]
    image_sets: dict[str, dict[str, Any]]
    pairs: list[PairResult]
    groups: list[Group]
    movement: list[Movement]
    missing: dict[str, str] = field(default_factory=dict)   # "net vs ref" or net -> why it is left out
    seconds: dict[str, float] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)

    def group(self, name: str) -> Group | None:
        return next((g for g in self.groups if g.name == name), None)

    def pair(self, net: str, ref: str, kind: str | None = None) -> PairResult | None:
        return next((p for p in self.pairs if p.pair.net == net and p.pair.ref == ref
                     and (kind is None or p.pair.kind == kind)), None)

    def to_json(self) -> dict[str, Any]:
        return _clean({"format": FORMAT, **asdict(self)})

    def save(self, out_dir: Path) -> Path:
        path = Path(out_dir) / FILE
        atomic_write(path, json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n")
        return path


def _clean(obj: Any) -> Any:
    """NaN and infinities to null, tuples to lists: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _ci(v: Any) -> tuple[float, float] | None:
    return None if v is None else (float(v[0]), float(v[1]))


def from_json(d: dict[str, Any]) -> AnalysisResult:
    if d.get("format") != FORMAT:
        raise TransferError(f"{FILE}: format {d.get('format')!r}, this code reads {FORMAT}; "
                            "run `transfer analyze` again")
    pairs = [PairResult(pair=Pair.from_json(p["pair"]), cka=p["cka"],
                        ci_images={l: _ci(c) for l, c in p["ci_images"].items()}, image_set=p["image_set"])
             for p in d["pairs"]]
    groups = [Group(name=g["name"], kind=g["kind"], family=g["family"], treatment=g["treatment"],
                    rows=[Row(label=r["label"], n=r["n"], pairs=r["pairs"],
                              layers={l: Stat(**s) for l, s in r["layers"].items()}) for r in g["rows"]])
              for g in d["groups"]]
    return AnalysisResult(plan=d["plan"], generated=d["generated"], settings=d["settings"], layers=d["layers"],
                          image_sets=d["image_sets"], pairs=pairs, groups=groups,
                          movement=[Movement.from_json(m) for m in d["movement"]], missing=d["missing"],
                          seconds=d["seconds"], figures=d["figures"])


def load(out_dir: Path) -> AnalysisResult:
    """analysis.json of a report directory; a damaged or foreign file is an error naming it."""
    path = Path(out_dir) / FILE
    try:
        data = json.loads(path.read_text())
        return from_json(data)
    except OSError as exc:
        raise TransferError(f"{shown(path)}: cannot read ({exc.strerror}); run `transfer analyze`") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise TransferError(f"{shown(path)}: not an analysis file ({type(exc).__name__}: {exc}); "
                            "run `transfer analyze` again") from None
