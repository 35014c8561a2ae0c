"""A real one-node SLURM cluster on localhost, for tests (Debian's slurm-wlm 22.05 + munge).

`Cluster.start(tmpdir)` writes a slurm.conf for this host with its state, spool, pid and log
files in tmpdir and two unused ports, starts munged if it is not answering, then slurmctld
and slurmd, and waits until the node is idle. `env` is what client commands (sbatch, squeue)
need: SLURM_CONF. `stop()` cancels what is left and stops both daemons by their pid files;
munged is left running (it is shared by anything else on the machine).

Also usable by hand:  python tests/slurm_cluster.py DIR   (starts, prints SLURM_CONF, waits for Ctrl-C)
"""
from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd")
BINARIES = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "slurmctld", "slurmd", "munged", "munge")


def missing_binaries() -> list[str]:
    found = {b: shutil.which(b) or next((p for p in (f"/usr/sbin/{b}",) if os.access(p, os.X_OK)), None)
             for b in BINARIES}
    return [b for b, p in found.items() if p is None]


def _which(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _munge_ok() -> bool:
    try:
        cred = subprocess.run([_which("munge"), "-n"], capture_output=True, timeout=10)
        if cred.returncode:
            return False
        check = subprocess.run([_which("unmunge")], input=cred.stdout, capture_output=True, timeout=10)
        return check.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_munge() -> None:
    """munged as the munge user, as the Debian package would run it."""
    if _munge_ok():
        return
    run_dir = Path("/run/munge")
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(run_dir, "munge", "munge")
    subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", _which("munged")], check=True, timeout=30)
    for _ in range(50):
        if _munge_ok():
            return
        time.sleep(0.2)
    raise RuntimeError("munged started but `munge -n | unmunge` does not succeed")


@dataclass
class Cluster:
    root: Path
    host: str = field(default_factory=socket.gethostname)
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_conf(self) -> None:
        r = self.root
        for d in ("state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        ctld_port, d_port = _free_ports(2)
        user = getpass.getuser()
        self.conf.write_text(f"""\
# One node on localhost for the tests: no cgroups, no accounting (SLURM_LOCAL.md).
ClusterName=transfertest
SlurmctldHost={self.host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser={user}
AuthType=auth/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
ReturnToService=2
KillWait=10
MinJobAge=600
NodeName={self.host} CPUs={self.cpus} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")

    def start(self, timeout: float = 60) -> "Cluster":
        ensure_munge()
        self.write_conf()
        for name in DAEMONS:
            # -D: stay in the foreground, so the Popen is the daemon and its pid file agrees.
            log = open(self.root / "log" / f"{name}.stderr", "wb")
            self.procs[name] = subprocess.Popen([_which(name), "-D", "-f", str(self.conf)], env=self.env,
                                                stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
            if name == "slurmctld":
                self._wait(lambda: self._run("scontrol", "ping").returncode == 0, timeout, "slurmctld to answer")
        self._wait(lambda: self._run("sinfo", "-h", "-o", "%t").stdout.strip() == "idle", timeout,
                   "the node to be idle")
        return self

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([_which(cmd[0]), *cmd[1:]], env=self.env, capture_output=True, text=True,
                              timeout=30)

    def _wait(self, ok, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}; see {self.root}/log/")
            if ok():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}; see {self.root}/log/")

    def squeue(self) -> str:
        return self._run("squeue", "--noheader", "--format=%i %j %T %r").stdout

    def stop(self, timeout: float = 30) -> None:
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            self._run("scancel", "--user", getpass.getuser())
            end = time.monotonic() + timeout
            while time.monotonic() < end and self.squeue().strip():
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            pidfile = self.root / f"{name}.pid"
            pids = {p.pid for n, p in self.procs.items() if n == name and p.poll() is None}
            if pidfile.is_file() and pidfile.read_text().strip().isdigit():
                pids.add(int(pidfile.read_text().strip()))
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            proc = self.procs.get(name)
            if proc is not None:
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/slurm-cluster").resolve()
    root.mkdir(parents=True, exist_ok=True)
    c = Cluster(root).start()
    print(f"export SLURM_CONF={c.conf}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        c.stop()
