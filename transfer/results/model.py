"""The report as typed objects, and report.json as their one serialisation (`to_json`).

Field names are report.json's keys (a field may name its key in `metadata={"json": ...}`, or be
`flatten`ed into its parent); a class lists computed members that belong in the JSON in `JSON_EXTRA`.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Mapping

from .collect import DONE, REJECTED, NetEntry
from .compare import Comparison
from .huh_tables import HuhTables
from .stats import Estimate
from .verdicts import Verdict
from .yosinski import Drops, Figure2, Natman, RandomWeights, Table1Row

HUH_FAMILIES = {"huh2016", "target"}


@dataclass(frozen=True)
class Counts:
    plan_nets: int
    with_results: int       # counted in the figures and tables
    missing: int            # not counted, whatever the reason
    unfinished: int         # running, stopped or not started
    failed: int             # FAILED or logs rejected


@dataclass(frozen=True)
class Precision:
    """How the numbers were computed: the precision every attempt recorded (transfer/caffe/precision.py)."""

    label: str
    deterministic: bool | None
    per_net: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Report:
    plan: str
    families: tuple[str, ...]
    layout: str
    top_k: int | None               # the --top-k override; None: k scaled to each net's tests
    intervals: str                  # how every interval is computed (stats.METHOD)
    partial: bool                   # --partial: unfinished nets with tests are counted too
    counts: Counts
    random_split: Figure2 | None
    table1: Mapping[str, Table1Row]
    natman: Natman | None
    random_weights: RandomWeights | None
    random_split_normalized: Mapping[int, Estimate | None]
    drops_n7: Drops | None
    reduced: Mapping[str, Estimate | None]
    huh2016: HuhTables | None
    verdicts: tuple[Verdict, ...]
    published: Mapping[str, Comparison]
    nets: Mapping[str, NetEntry]
    warnings: tuple[str, ...]
    precision: Precision
    logs: str = ""
    generated: str = ""
    figures: tuple[str, ...] = ()

    JSON_EXTRA = ("missing", "missing_reasons", "rejected", "unfinished", "still_improving",
                  "includes_unfinished", "complete")

    @property
    def yosinski(self) -> bool:
        """Whether the plan has any of the first paper's families (else its sections are left out)."""
        return bool(set(self.families) - HUH_FAMILIES)

    @property
    def missing(self) -> list[str]:
        """Nets not counted, whatever the reason."""
        return [name for name, e in self.nets.items() if not e.counted]

    @property
    def missing_reasons(self) -> dict[str, str]:
        return {name: e.reason for name, e in self.nets.items() if not e.counted}

    @property
    def rejected(self) -> dict[str, str]:
        """Nets whose logs hold numbers that cannot be results: the reason names the file and line."""
        return {name: e.reason for name, e in self.nets.items() if e.state == REJECTED}

    @property
    def unfinished(self) -> dict[str, str]:
        """Every net that is not DONE, with its state (running, failed, unfinished, not started, ...)."""
        return {name: e.state for name, e in self.nets.items() if e.state != DONE}

    @property
    def includes_unfinished(self) -> bool:
        """--partial counted a net that is not DONE: every figure and table says so."""
        return any(e.counted and e.state != DONE for e in self.nets.values())

    @property
    def complete(self) -> bool:
        """Every net of the plan is DONE and counted."""
        return all(e.counted and e.state == DONE for e in self.nets.values())

    @property
    def still_improving(self) -> list[str]:
        """Counted nets whose validation curve was still climbing at their last tests (metrics.convergence)."""
        return [name for name, e in self.nets.items() if e.counted and e.still_improving]


def to_json(obj: object) -> object:
    """Dataclasses, mappings and sequences as JSON values; a non-finite float becomes null."""
    if is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, object] = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            flat = f.metadata.get("flatten")
            if flat is not None:
                out.update(_flat(value, flat))
            else:
                out[f.metadata.get("json", f.name)] = to_json(value)
        for name in getattr(obj, "JSON_EXTRA", ()):
            out[name] = to_json(getattr(obj, name))
        return out
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


def _flat(value: object, kind: object) -> dict[str, object]:
    """A flattened field's members in its parent: a mapping's items, or a dataclass's fields (null when
    the value is None: `kind` is then its class)."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if value is None and isinstance(kind, type) and is_dataclass(kind):
        return {f.name: None for f in fields(kind)}
    got = to_json(value)
    return got if isinstance(got, dict) else {}
