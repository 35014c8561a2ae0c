"""One trainer per net: a lock file created with O_EXCL, safe on shared (NFS) file systems.

The file holds JSON {host, pid, start, token, time}. Its holder touches it (heartbeat) while it
works, so another host can tell a live lock from one left by a crashed machine: a lock is stale
when its process is gone (same host: the pid is dead or belongs to a newer process) or, seen from
another host, when its heartbeat is older than `stale_after` seconds. A stale lock is taken over
(and the caller is told so); a live one raises LockHeld.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HEARTBEAT_S = 30.0
# Seen from another host, a lock not touched for this long belongs to a dead machine.
STALE_AFTER_S = float(os.environ.get("TRANSFER_LOCK_STALE_S", "600"))
# Taking over a stale lock is itself guarded by a short-lived lock (two takers, one winner).
_TAKEOVER_STALE_S = 60.0


class LockHeld(Exception):
    """The lock belongs to a live process."""

    def __init__(self, path: Path, info: dict):
        self.path, self.info = path, info
        age = time.time() - info.get("time", 0)
        super().__init__(f"{path} is held by pid {info.get('pid')} on {info.get('host')} "
                         f"(heartbeat {age:.0f} s ago)")


def _proc_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (tells a reused pid apart); None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read(path: Path) -> dict | None:
    """The lock's contents, or None when there is no lock. A half-written lock reads as {}."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        info = {}
    try:
        info["time"] = Path(path).stat().st_mtime  # the heartbeat is the file's mtime
    except FileNotFoundError:
        return None
    return info


def stale_reason(info: dict, stale_after: float = STALE_AFTER_S) -> str | None:
    """Why a lock is stale (its holder is gone), or None while the holder is alive."""
    age = time.time() - info.get("time", 0)
    if info.get("host") == socket.gethostname() and "pid" in info:
        pid = int(info["pid"])
        if not _pid_alive(pid):
            return f"process {pid} on this host is gone"
        start = info.get("start")
        if start and _proc_start(pid) not in (None, start):
            return f"pid {pid} now belongs to another process"
        return None
    if not info.get("pid"):  # unreadable (being written, or a crash mid-write)
        return f"unreadable lock, untouched for {age:.0f} s" if age > _TAKEOVER_STALE_S else None
    if age > stale_after:
        return f"no heartbeat from {info.get('host')} for {age:.0f} s"
    return None


def is_live(path: Path, stale_after: float = STALE_AFTER_S) -> bool:
    info = read(path)
    return info is not None and stale_reason(info, stale_after) is None


def _create(path: Path, content: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    return True


@dataclass
class Lock:
    path: Path
    token: str
    took_over: str | None = None   # why a stale lock was replaced, if one was
    _last_beat: float = 0.0

    def heartbeat(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self._last_beat >= HEARTBEAT_S:
            try:
                os.utime(self.path)
            except FileNotFoundError:
                pass
            self._last_beat = now

    def owned(self) -> bool:
        info = read(self.path)
        return bool(info) and info.get("token") == self.token

    def release(self) -> None:
        if self.owned():  # never remove a lock someone took over from us
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(path: Path | str, stale_after: float = STALE_AFTER_S) -> Lock:
    """Take the lock at `path` or raise LockHeld. A stale lock is taken over (Lock.took_over says why)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    token = uuid.uuid4().hex
    content = json.dumps({"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid),
                          "token": token, "since": time.time()})
    took_over = None
    for _ in range(5):
        if _create(path, content):
            lock = Lock(path, token, took_over)
            lock.heartbeat(force=True)
            return lock
        info = read(path)
        if info is None:
            continue  # released meanwhile: try again
        reason = stale_reason(info, stale_after)
        if reason is None:
            raise LockHeld(path, info)
        if _remove_stale(path, info, stale_after):
            took_over = (f"took over the lock of pid {info.get('pid')} on {info.get('host')}: {reason}")
    info = read(path) or {}
    raise LockHeld(path, info)


def _remove_stale(path: Path, seen: dict, stale_after: float) -> bool:
    """Remove a stale lock, unless another process replaced it since we read it."""
    guard = path.with_name(path.name + ".takeover")
    if not _create(guard, str(os.getpid())):
        try:  # a taker that died in these few lines leaves its guard: clear it after a while
            if time.time() - guard.stat().st_mtime > _TAKEOVER_STALE_S:
                guard.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        time.sleep(0.2)
        return False
    try:
        now = read(path)
        if now is None:
            return True
        if now.get("token") != seen.get("token") or stale_reason(now, stale_after) is None:
            return False
        path.unlink(missing_ok=True)
        return True
    finally:
        guard.unlink(missing_ok=True)
