"""LMDB databases of Datums that are never half-finished-looking, and resumable while being written.

A database is written under `DB.partial/`; each commit stores its Datums together with a progress record
(in the same LMDB transaction, so the two can never disagree). Only once everything is written is the
progress record deleted, `manifest.json` written, and the directory renamed to `DB` in one step, so a net
pointed at `DB` sees either nothing or the whole database.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import lmdb

from .errors import TransferError
from .files import atomic_write

MANIFEST = "manifest.json"
BUILD_INFO = "build.json"          # identity of an unfinished build, inside DB.partial/
PARTIAL_SUFFIX = ".partial"
# Sorts before every "%08d_path" key, so Datum keys can still be appended in order.
PROGRESS_KEY = b"\x00transfer-progress"


def datum_key(index: int, path: str) -> bytes:
    """convert_imageset's key: position in the (shuffled) list, then the path; keeps list order."""
    return f"{index:08d}_{path}".encode()


def key_path(key: bytes) -> str:
    return key[9:].decode()


def read_manifest(db: str | os.PathLike) -> dict[str, Any]:
    db = Path(db)
    partial = Path(str(db) + PARTIAL_SUFFIX)
    if not (db / MANIFEST).is_file():
        hint = f" ({partial} exists: its build has not finished; rerun it)" if partial.exists() else ""
        raise TransferError(f"{db} is not a finished database: no {MANIFEST}{hint}")
    return json.loads((db / MANIFEST).read_text())


def open_read(db: str | os.PathLike) -> lmdb.Environment:
    db = Path(db)
    if not (db / "data.mdb").is_file():
        partial = Path(str(db) + PARTIAL_SUFFIX)
        if partial.exists():
            raise TransferError(f"{db} does not exist yet: the build in {partial} has not finished; rerun it")
        raise TransferError(f"{db} is not an LMDB directory (no data.mdb)")
    return lmdb.open(str(db), readonly=True, lock=False, readahead=True, max_readers=8)


def iter_items(env: lmdb.Environment, keys_only: bool = False) -> Iterator[tuple[bytes, bytes | None]]:
    with env.begin(buffers=False) as txn:
        cur = txn.cursor()
        if keys_only:
            for key in cur.iternext(keys=True, values=False):
                yield key, None
        else:
            yield from cur


class PartialDB:
    """Writer of `DB.partial/`: resumes a matching unfinished build, refuses a mismatched one."""

    def __init__(self, final: str | os.PathLike, identity: dict[str, Any], expected_bytes: int) -> None:
        self.final = Path(final)
        self.path = Path(str(self.final) + PARTIAL_SUFFIX)
        self.identity = identity
        self.state: dict[str, Any] = {"next": 0, "count": 0, "labels": {}, "skipped": []}
        self.resumed = False
        # One writer at a time (two `make -j` jobs, two terminals), taken before DB.partial is looked
        # at or removed, on a sibling file so that removing the directory cannot drop it.
        self._lock_path = Path(str(self.path) + ".lock")
        self._lock = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise TransferError(f"another process is writing {self.path}") from None
        try:
            self._open(identity, expected_bytes)
        except BaseException:
            self._unlock()  # a refused or failed start must not keep others out
            raise

    def _open(self, identity: dict[str, Any], expected_bytes: int) -> None:
        """Resume a matching DB.partial, refuse a mismatched one, or start a new one."""
        info = self.path / BUILD_INFO
        if self.path.exists() and info.is_file():
            old = json.loads(info.read_text())
            diff = [f"{k}: was {old.get(k)!r}, now {identity.get(k)!r}"
                    for k in sorted(set(old) | set(identity)) if old.get(k) != identity.get(k)]
            if diff:
                raise TransferError(f"{self.path} holds an unfinished build of something else ("
                                    + "; ".join(diff) + f"); delete {self.path} to start over")
            self.resumed = True
        elif self.path.exists():
            shutil.rmtree(self.path)  # created but died before recording what it was: nothing to keep
        if not self.resumed:
            self.path.mkdir(parents=True)
            atomic_write(info, json.dumps(identity, indent=1, sort_keys=True) + "\n")
        # writemap: Datums are copied straight into the file's map (no malloc'd dirty pages, no write()
        # at commit): puts cost a third. The file is then as big as the map (sparse) until finish() trims
        # it. A killed writer only leaves garbage in pages no committed meta page points to.
        self.env = lmdb.open(str(self.path), map_size=max(int(expected_bytes * 1.25), 1 << 26) + (1 << 26),
                             subdir=True, max_dbs=0, writemap=True)
        if self.resumed:
            with self.env.begin() as txn:
                raw = txn.get(PROGRESS_KEY)
            if raw is not None:
                self.state = json.loads(raw)

    def commit(self, items: list[tuple[bytes, bytes]], state: dict[str, Any]) -> None:
        """Append Datums (keys increasing) and record progress atomically with them."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in items:
                        txn.put(key, value, append=True)
                    txn.put(PROGRESS_KEY, json.dumps(state).encode())
                break
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
        self.state = state

    def finish(self, manifest: dict[str, Any]) -> None:
        """Drop the progress record, write the manifest, rename to the final name (atomic)."""
        with self.env.begin(write=True) as txn:
            txn.delete(PROGRESS_KEY)
        self.env.sync(True)
        used = (self.env.info()["last_pgno"] + 1) * self.env.stat()["psize"]
        self.env.close()
        # Give back the unused, sparse tail of the map: readers never look past the last page.
        data = self.path / "data.mdb"
        if data.stat().st_size > used:
            os.truncate(data, used)
        atomic_write(self.path / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        (self.path / BUILD_INFO).unlink()
        if self.final.exists():
            raise TransferError(f"{self.final} appeared while building; the finished build is in {self.path}")
        os.rename(self.path, self.final)
        self._unlock()
        fd = os.open(self.final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # make the rename itself durable
        finally:
            os.close(fd)

    def close(self) -> None:
        try:
            self.env.close()
        except lmdb.Error:
            pass
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is None:
            return
        self._lock_path.unlink(missing_ok=True)  # still held: a writer starting now makes a new one
        os.close(self._lock)
        self._lock = None
