"""The SLURM queue as `transfer` sees it: job names of a plan's nets, squeue and sbatch.

A job is named `transfer:<plan>-<6 hex of its runs directory>:<net>` (a pack: `<net>+<net>+...`);
that is how queued jobs are found again (squeue --me). `transfer status` reads the queue through
this module alone; submitting is transfer/train/slurm.py.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from ..core.errors import TransferError
from ..core.files import repo_path
from ..plan.model import Plan

PACK_SEP = "+"


def job_name(plan: Plan, net_name: str) -> str:
    """`transfer:<plan>-<6 hex of its runs directory>:<net>`: two checkouts (or copies) of one plan
    train into different run directories, and must not take each other's jobs for their own."""
    where = hashlib.sha256(str(repo_path(plan.dirs.runs).resolve()).encode()).hexdigest()[:6]
    return f"transfer:{plan.name}-{where}:{net_name}"


def slurm(cmd: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise TransferError(f"`{cmd[0]}` not found on PATH: run `transfer submit` on a SLURM login node "
                            f"(or use --dry-run)")
    try:
        proc = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if check:
            raise TransferError(f"`{shlex.join(cmd)}` did not answer in {timeout:.0f} s: is slurmctld up?") from None
        return subprocess.CompletedProcess(cmd, 124, "", "timed out")
    if check and proc.returncode:
        raise TransferError(f"`{shlex.join(cmd)}` failed ({proc.returncode}): "
                            f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def queue(plan: Plan, strict: bool) -> list[dict[str, str]]:
    """This user's jobs of this plan, oldest first."""
    conf = os.environ.get("SLURM_CONF")
    if shutil.which("squeue") is None or (conf and not Path(conf).is_file()):
        if strict:
            raise TransferError("`squeue` not found on PATH: is this a SLURM login node?" if not conf or
                                Path(conf).is_file() else f"SLURM_CONF={conf}: no such file")
        return []
    # Not strict (`transfer status`, dry runs): a missing controller must not hang the caller long.
    proc = slurm(["squeue", "--me", "--noheader", "--format=%i|%j|%T|%r|%E"], check=strict,
                  timeout=120 if strict else 15)
    if proc.returncode:
        return []
    prefix = job_name(plan, "")
    jobs = []
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) == 5 and parts[1].startswith(prefix):
            jobs.append(dict(id=parts[0], net=parts[1][len(prefix):], state=parts[2], reason=parts[3],
                             dependency=parts[4]))
    return sorted(jobs, key=lambda j: int(re.sub(r"\D.*", "", j["id"]) or 0))


class SlurmJob(NamedTuple):
    id: str
    state: str

    def __str__(self) -> str:  # how `transfer status` shows it
        return f"{self.id} {self.state}"


def queued_jobs(plan: Plan, strict: bool = False) -> dict[str, SlurmJob]:
    """net name -> (job id, state) of the newest queued or running SLURM job of each net.

    The newest, because after a time limit the follow-up is the job that will finish the net.
    Without squeue (not a cluster) the answer is empty unless strict.
    """
    out: dict[str, SlurmJob] = {}
    for job in queue(plan, strict):
        for net in pack_members(job["net"]):
            out[net] = SlurmJob(job["id"], job["state"])
    return out


def pack_members(key: str) -> list[str]:
    """The nets of a job: one net, or a pack `a+b+c` (net names hold no '+': spec.SAFE)."""
    return key.split(PACK_SEP)


def sbatch(script: Path, args: list[str]) -> str:
    proc = slurm(["sbatch", "--parsable", *args, str(script)])
    return proc.stdout.strip().split(";")[0]
