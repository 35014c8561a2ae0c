"""`transfer status`: where every net of a plan stands, read from its run directory alone
(and the SLURM queue, where there is one). No process needs to be running."""
from __future__ import annotations

import argparse

from ..core.errors import TransferError
from ..core.files import duration
from ..plan.load import load_plan
from ..plan.model import Plan
from .integrity import START_OVER
from .progress import net_state
from .queue import queued_jobs


def _slurm_jobs(plan: Plan) -> dict[str, str] | None:
    """net name -> SLURM job (id and state), when a SLURM queue answers here."""
    try:
        jobs = queued_jobs(plan)
    except TransferError:  # no scheduler here: the column is simply left out
        return None
    return {name: str(job) for name, job in jobs.items()}


def status_table(plan: Plan, only: str | None = None) -> str:
    nets = plan.ordered(plan.select(only))
    states = [net_state(plan, n) for n in nets]
    slurm = _slurm_jobs(plan)
    head = f"{'net':28} {'state':8} {'iteration':>15} {'val acc':>7} {'it/s':>6} {'left':>8}"
    head += f"  {'slurm':14}" if slurm is not None else ""
    lines = [head]
    for st in states:
        acc = f"{st.val_accuracy:.3f}" if st.val_accuracy is not None else "-"
        speed = f"{st.iter_per_s:.2f}" if st.iter_per_s else "-"
        row = (f"{st.name:28} {st.state:8} {f'{st.iteration}/{st.max_iter}':>15} {acc:>7} {speed:>6} "
               f"{duration(st.seconds_left):>8}")
        if slurm is not None:
            row += f"  {slurm.get(st.name, '-'):14}"
        if st.state == "running" and st.holder:
            row += f"  {st.holder}"
        if st.state == "blocked":
            row += f"  ({st.detail[0]})"
        lines.append(row)
    counts = {s: sum(x.state == s for x in states) for s in
              ("done", "running", "pending", "blocked", "failed", "diverged", "other")}
    lines.append(", ".join(f"{v} {k}" if k != "other" else f"{v} holding another definition"
                           for k, v in counts.items() if v))
    for st in states:
        if st.state in ("failed", "diverged", "other"):
            what = "holds another definition" if st.state == "other" else st.state
            first = st.detail[0] if st.detail else ""
            lines.append(f"\n{st.name} {what}: {first.removeprefix(what + ': ')}")
            lines.extend(f"    {line}" for line in st.detail[1:][-10:])
    if counts["other"]:
        lines.append(f"\n(nets holding another definition are not done: {START_OVER})")
    return "\n".join(lines)


def _status_cmd(args: argparse.Namespace) -> int:
    print(status_table(load_plan(args.plan), args.only))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("status", help="where every net of a plan stands")
    s.add_argument("--plan", default="paper", help="plan name (paper, small, tiny) or YAML file (default paper)")
    s.add_argument("--only", help="comma-separated name patterns")
    s.set_defaults(func=_status_cmd)
