"""Where a net stands, read from its run directory alone (logs, snapshots, lock, DONE/FAILED):
what `transfer status` shows and what training and the runner print as progress."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..caffe.logs import read_logs
from ..core.errors import TransferError
from ..core.files import duration
from ..plan.definition import recorded_by
from ..plan.model import Net, Plan

# failed: the last attempt failed (its cause in `detail`); diverged: its loss stopped being finite;
# other: its run directory holds another definition of the net (another plan's, or the plan changed)
STATES = ("pending", "running", "done", "failed", "diverged", "other", "blocked")


@dataclass
class NetState:
    name: str
    state: str                          # one of STATES
    iteration: int = 0
    max_iter: int = 0
    val_accuracy: float | None = None   # latest validation accuracy
    train_loss: float | None = None     # latest training loss
    iter_per_s: float | None = None     # speed of the latest attempt
    seconds_left: float | None = None   # at that speed
    attempts: int = 0
    holder: str | None = None           # host:pid of a running net's lock
    detail: list[str] = field(default_factory=list)   # why blocked / last log lines of a failure

    def to_json(self) -> dict:
        return asdict(self)


def _progress(st: NetState, net: Net) -> None:
    """Iteration, accuracy and speed from the logs and snapshots."""
    files = net.run.log_files()
    st.attempts = len(files)
    if files:
        try:
            whole = read_logs(files, strict=False)
            if whole.val_accuracy:
                st.val_accuracy = whole.val_accuracy[max(whole.val_accuracy)]
            latest = read_logs(files[-1:], strict=False)
            st.iteration, st.iter_per_s = latest.last_iteration or 0, latest.speed()
            if whole.train_loss:
                st.train_loss = whole.train_loss[max(whole.train_loss)]
        except TransferError:
            pass
    snaps = net.run.snapshots()
    if snaps:
        st.iteration = max(st.iteration, snaps[0][0])


def _other_definition(plan: Plan, net: Net) -> str | None:
    """Why the run directory does not hold the plan's definition of the net, or None."""
    try:
        other = net.run.other_definition()
    except TransferError as exc:   # a damaged definition.json names itself
        return str(exc)
    return None if other is None else (f"recorded by {recorded_by(other[0])}; the plan's differs (recorded vs the plan's): "
                                       + "; ".join(other[1][:4]))


def net_state(plan: Plan, net: Net) -> NetState:
    """Where a net stands, from its run directory alone (no process needed)."""
    st = NetState(name=net.name, state="pending", max_iter=net.max_iter)
    _progress(st, net)
    other = _other_definition(plan, net)
    if other is None and net.run.is_done():
        st.state, st.iteration, st.iter_per_s = "done", net.max_iter, None
        return st
    holder = net.run.lock_holder()
    if holder is not None:
        st.state, st.holder = "running", f"{holder.get('host')}:{holder.get('pid')}"
        if st.iter_per_s:
            st.seconds_left = (net.max_iter - st.iteration) / st.iter_per_s
        return st
    st.iter_per_s = None
    if other is not None:
        st.state, st.detail = "other", [other]
        return st
    failed = net.run.failed_record()
    if failed is not None:
        st.state = "diverged" if failed.get("diverged") else "failed"
        if failed:
            st.detail = [failed.get("error") or f"caffe exit {failed.get('exit')}"] + list(failed.get("tail", []))
        return st
    base = plan.base_of(net)
    if base is not None and not base.run.is_done():
        st.state, st.detail = "blocked", [f"waits for {net.base}"]
    return st


def progress_line(st: NetState) -> str:
    """`iteration 1200/60000, loss 4.310, val acc 0.121, 2.35 it/s, 6h 57m left` of a training net."""
    parts = [f"iteration {st.iteration}/{st.max_iter}"]
    if st.train_loss is not None:
        parts.append(f"loss {st.train_loss:.3f}")
    if st.val_accuracy is not None:
        parts.append(f"val acc {st.val_accuracy:.3f}")
    if st.iter_per_s:
        parts.append(f"{st.iter_per_s:.2f} it/s")
        parts.append(f"{duration((st.max_iter - st.iteration) / st.iter_per_s)} left")
    return ", ".join(parts)


def training_progress(net: Net) -> str:
    """The progress line of a net being trained, from its logs and snapshots."""
    st = NetState(name=net.name, state="running", max_iter=net.max_iter)
    _progress(st, net)
    return progress_line(st)
