"""Writing files so that nothing half-written looks finished, and hashing them."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from .. import REPO
from .errors import TransferError


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write a file so readers see the old content or the new, never a part (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish(tmp: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Rename a finished temp file into place with the permissions a plain open() would give
    (mkstemp makes files 0600, and these are shared results)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, dest)


def digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in blocks (lists and models can be large)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: str | os.PathLike, what: str, fix: str) -> Any:
    """A JSON record this project wrote (a manifest, a build's identity): a missing, unreadable, cut-short
    or non-JSON file is a TransferError naming the file, saying what it is and how to recover (`fix`)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TransferError(f"{path}: cannot read {what} ({exc.strerror}); {fix}") from None
    try:
        return json.loads(raw)
    except ValueError as exc:   # JSONDecodeError, or bytes that are not UTF-8
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        state = "empty" if not raw.strip() else f"damaged or cut short: not JSON{where}, {len(raw)} bytes"
        raise TransferError(f"{path}: {what} is {state}; {fix}") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Records of an append-only JSON-lines file; a line cut short by a crash (or by a non-atomic
    append on a network file system) is skipped, not fatal."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    return records


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record to a JSON-lines file: one short write, so appends from several
    processes do not interleave."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def not_a_file(path: Path) -> str | None:
    """What `path` is when it is not a regular file or a link to one (a link that loops or points
    nowhere, a folder, a device); None when it is one."""
    try:
        st = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"a symbolic link that loops ({path} -> {os.readlink(path)})"
        if path.is_symlink():
            return f"a symbolic link to nothing ({path} -> {os.readlink(path)})"
        return f"unreadable ({exc.strerror})"
    if stat.S_ISREG(st.st_mode):
        return None
    return "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, pipe or socket)"


def size_text(n: float) -> str:
    """A byte count for messages: 512 B, 1.5 KiB, 11.8 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


def duration(seconds: float | None) -> str:
    """A short human duration for progress lines: 42s -> 0m42s, 2h05m, 3d04h; '-' when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def repo_path(path: str | os.PathLike) -> Path:
    """A plan path (relative to the repository, or absolute) as an absolute path, `..` resolved (so
    that messages name the place, whichever directory a command runs in)."""
    return Path(os.path.normpath(REPO / path))


def shown(path: str | os.PathLike) -> str:
    """A path as written into records and messages: repository-relative where possible."""
    path = Path(path)
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
