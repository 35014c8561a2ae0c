"""Which nets a report counts, and each net's numbers from its logs.

Layouts of the logs directory:
  runs      <DIR>/<net name>/logs/*.log[.gz]  (this project's run directories; the default)
  released  <DIR>/<released name>/*.gz        (the authors' released results folder)

Only finished nets count: in run directories a net whose run directory says DONE (RunDir.is_done); in
the released layout, which has no DONE files, a net whose logs reach its max_iter. Every other net is
listed with its state (still training, failed, stopped, never started, logs rejected), never dropped
silently; `partial` also counts the nets still training or stopped with the tests they reached (the report
then says so), never a failed one.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from .metrics import Convergence, NetMetric, net_metric
from ..caffe.logs import LogError, NetLog, log_files, read_logs
from ..core.errors import TransferError
from ..plan.model import Net, Plan

LAYOUTS = ("runs", "released")
DONE, RUNNING, FAILED, STOPPED, NOT_STARTED = "done", "running", "failed", "unfinished", "not started"
ABSENT, REJECTED, NO_TESTS = "absent", "log rejected", "no validation test"


@dataclass(frozen=True)
class NetEntry:
    """One net of the plan in the report: its identity, state, numbers, and whether it counts."""

    released_name: str | None
    family: str
    treatment: str
    n: int | None
    target: str
    split: str | None
    replicate: int
    group: str
    max_iter: int
    state: str                  # done | running | failed | unfinished | not started | absent | log rejected | ...
    counted: bool               # its number is in the figures and tables
    reason: str                 # why it does not count ("" when it does)
    metric: NetMetric | None = field(default=None, metadata={"flatten": NetMetric})   # top-k metric, final, ...
    attempts: int = 0

    JSON_EXTRA = ("complete", "still_improving")

    @property
    def complete(self) -> bool:
        """Its logs reach max_iter."""
        return self.metric is not None and self.metric.iterations >= self.max_iter

    @property
    def still_improving(self) -> bool | None:
        c = self.convergence
        return None if c is None else c.still_improving

    @property
    def convergence(self) -> Convergence | None:
        return self.metric.convergence if self.metric else None


@dataclass(frozen=True)
class Collected:
    entries: Mapping[str, NetEntry]
    logs: Mapping[str, NetLog]

    def counted(self) -> dict[str, NetMetric]:
        return {name: e.metric for name, e in self.entries.items() if e.counted and e.metric}


def run_state(net: Net, logs_dir: Path, layout: str) -> tuple[str, list[Path], str]:
    """(state, log files, where) of one net before its logs are read."""
    if layout == "runs":
        # the net's own run directory (whose DONE counts only for the definition the plan gives it), or
        # the same directory moved or copied under another logs directory
        rd = replace(net.run, where=logs_dir / net.name)
        other = rd.other_definition()
        if other is not None:
            return FAILED, log_files(rd.logs_dir), (f"{rd.path} holds another definition of the net than the plan's "
                                                    f"({'; '.join(other[1])})")
        files = log_files(rd.logs_dir)
        if rd.is_done():
            return DONE, files, str(rd.logs_dir)
        if rd.is_locked():
            return RUNNING, files, str(rd.path)
        failed = rd.failed_record()
        if failed is not None:
            return FAILED, files, f"{rd.failed_file}: {failed.get('error', 'unreadable record')}"
        return (STOPPED if files else NOT_STARTED), files, str(rd.logs_dir)
    if layout == "released":
        if not net.released_name:
            return ABSENT, [], "no released name in the plan"
        where = logs_dir / net.released_name
        files = log_files(where)
        return (DONE if files else ABSENT), files, str(where)   # DONE until its logs say how far they reach
    raise TransferError(f"unknown layout '{layout}' for {logs_dir} (known: {', '.join(LAYOUTS)})")


def _val_images(plan: Plan, net: Net) -> int:
    return net.solver.test_iter * plan.model.test_batch


def _entry(net: Net, state: str, metric: NetMetric | None, attempts: int, partial: bool, reason: str,
           detail: str) -> NetEntry:
    if metric is None and not reason:
        state, reason = (NO_TESTS, "its logs hold no validation test") if state == DONE else \
            (state, "no validation test yet")
    elif state != DONE and not reason:
        reason = f"at iteration {metric.iterations}/{net.max_iter}" if metric else ""
        reason += f" ({detail})" if state == FAILED else ""
    # --partial adds the nets still training or stopped, never a failed one
    counted = metric is not None and (state == DONE or (partial and state in (RUNNING, STOPPED)))
    return NetEntry(net.released_name, net.family, net.treatment, net.n, net.target, net.split, net.replicate,
                    net.group or net.name, net.max_iter, state, counted, "" if state == DONE else reason,
                    metric, attempts)


def collect(plan: Plan, logs_dir: Path, layout: str, k: int | None = None, partial: bool = False) -> Collected:
    """Every net of the plan with its state and numbers (k: top-k override; None scales it per net)."""
    if layout not in LAYOUTS:
        raise TransferError(f"unknown layout '{layout}' for {logs_dir} (known: {', '.join(LAYOUTS)})")
    if not logs_dir.is_dir():
        raise TransferError(f"logs directory {logs_dir} does not exist (layout '{layout}')")
    entries: dict[str, NetEntry] = {}
    logs: dict[str, NetLog] = {}
    for net in plan.nets:
        state, files, where = run_state(net, logs_dir, layout)
        metric, reason = None, ""
        if not files:
            reason = f"no log files in {where}" if state != FAILED else f"no log files ({where})"
        else:
            try:
                logs[net.name] = read_logs(files)
            except LogError as exc:   # numbers that cannot be results: the net is shown without them
                state, reason = REJECTED, str(exc)
            else:
                metric = net_metric(logs[net.name], k, _val_images(plan, net))
                if layout == "released" and metric and metric.iterations < net.max_iter:
                    state = STOPPED    # released logs have no DONE: a finished one reaches max_iter
        entries[net.name] = _entry(net, state, metric, len(files), partial, reason, where)
    return Collected(entries, logs)
