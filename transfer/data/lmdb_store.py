"""LMDB databases of Datums that are never half-finished-looking, and resumable while being written.

A database is written under `DB.partial/`; each commit stores its Datums together with a progress record
(in the same LMDB transaction, so the two can never disagree). Only once everything is written is the
progress record deleted, `manifest.json` written, and the directory renamed to `DB` in one step, so a net
pointed at `DB` sees either nothing or the whole database.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import struct
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import lmdb

from ..core.errors import LockedError, NoSpaceError, TransferError
from ..core.files import atomic_write, read_json

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
    """The manifest of a finished database: the one reader of manifest.json. A missing one says the build
    has not finished; a damaged one (cut short, emptied, not a manifest) names the file and how to recover."""
    db = Path(db)
    partial = Path(str(db) + PARTIAL_SUFFIX)
    path = db / MANIFEST
    if not path.is_file():
        hint = f" ({partial} exists: its build has not finished; rerun it)" if partial.exists() else ""
        raise TransferError(f"{db} is not a finished database: no {MANIFEST}{hint}")
    fix = (f"without it {db} cannot be trusted or resumed: delete {db} and build it again (`transfer prepare` "
           "rebuilds a plan's), or copy manifest.json back from where the database came from")
    m = read_json(path, "the database's manifest", fix)
    datum = m.get("datum") if isinstance(m, dict) else None
    ok = (isinstance(datum, dict) and all(isinstance(datum.get(k), int) for k in ("channels", "height", "width"))
          and isinstance(m.get("count"), int) and isinstance(m.get("labels"), dict)
          and isinstance(m.get("list"), dict))
    if not ok:
        raise TransferError(f"{path}: not a manifest of this project's databases (no count, labels, datum "
                            f"shape or list); {fix}")
    return m


def datum_shape(db: str | os.PathLike) -> tuple[int, int, int]:
    """(channels, height, width) of a finished database's Datums, from its manifest."""
    d = read_manifest(db)["datum"]
    return d["channels"], d["height"], d["width"]


# LMDB's meta pages (pages 0 and 1, little-endian, 64-bit build): a 16-byte page header, then MDB_meta:
# magic u32, version u32, address, mapsize, two MDB_db of 48 bytes (the first one's u32 pad holds the
# page size), last_pg, txnid. The newer of the two metas is the database's state.
_META_MAGIC, _META_VERSION, _P_META = 0xBEEFC0DE, 1, 0x08


def data_file_extent(data: str | os.PathLike) -> int:
    """Bytes an LMDB data file must have for every page its newest meta page uses; raises a
    TransferError naming the file when it is not an LMDB file or is shorter (truncated: mapping it
    would end a reader with SIGBUS, a 'Bus error', instead of an error)."""
    data = Path(data)
    try:
        with open(data, "rb") as f:
            head = f.read(4096)
            psize = struct.unpack_from("<I", head, 40)[0] if len(head) >= 44 else 0
            if psize >= 512 and psize & (psize - 1) == 0 and 2 * psize > len(head):
                head += f.read(2 * psize - len(head))
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise TransferError(f"{data}: cannot read ({exc.strerror})") from None
    metas = []
    for page in (0, 1):
        off = page * psize
        if psize < 512 or len(head) < off + 152:
            break
        flags = struct.unpack_from("<H", head, off + 10)[0]
        magic, version = struct.unpack_from("<II", head, off + 16)
        if magic != _META_MAGIC or version != _META_VERSION or not flags & _P_META:
            break
        last_pg, txnid = struct.unpack_from("<QQ", head, off + 136)
        metas.append((txnid, last_pg))
    if len(metas) != 2:
        raise TransferError(f"{data}: not an LMDB data file, or its header is damaged ({size} bytes); "
                            "rebuild the database")
    _, last_pg = max(metas)
    need = (last_pg + 1) * psize
    if size < need:
        raise TransferError(f"{data}: truncated: {size} bytes, but its header says the data run to byte "
                            f"{need} (page {last_pg} of {psize} bytes); copy it again or rebuild the database")
    return need


def open_read(db: str | os.PathLike) -> lmdb.Environment:
    """A finished or partial database for reading, its data file checked first (never a Bus error)."""
    db = Path(db)
    if not (db / "data.mdb").is_file():
        partial = Path(str(db) + PARTIAL_SUFFIX)
        if partial.exists():
            raise TransferError(f"{db} does not exist yet: the build in {partial} has not finished; rerun it")
        raise TransferError(f"{db} is not an LMDB directory (no data.mdb)")
    data_file_extent(db / "data.mdb")
    try:
        return lmdb.open(str(db), readonly=True, lock=False, readahead=True, max_readers=8)
    except lmdb.Error as exc:
        raise TransferError(f"{db / 'data.mdb'}: cannot open it as an LMDB database ({exc})") from None


def in_child(db: str | os.PathLike, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a forked process that reads `db`: a file damaged so that reading it raises a
    signal (SIGBUS, SIGSEGV) becomes a TransferError naming the file instead of killing the command.
    Exceptions of fn come back as themselves; its result must pickle."""
    import multiprocessing as mp  # noqa: PLC0415
    import pickle  # noqa: PLC0415

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            out = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 (handed to the parent as it is)
            out = ("err", exc)
        try:
            send.send(out)
        except (pickle.PicklingError, TypeError, AttributeError):
            send.send(("err", TransferError(f"{out[1]!r}")))
        finally:
            send.close()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    try:
        got = recv.recv()
    except EOFError:
        got = None
    proc.join()
    if got is None:
        code = proc.exitcode or 0
        name = signal.Signals(-code).name if code < 0 else f"exit {code}"
        raise TransferError(f"{Path(db) / 'data.mdb'}: reading it ended the reader with {name}: the file is "
                            "damaged; copy it again or rebuild the database")
    kind, value = got
    if kind == "err":
        raise value
    return value


def _lmdb_error(db: Path, exc: Exception) -> TransferError:
    """An LMDB failure while reading, as an error naming the file."""
    return TransferError(f"{db / 'data.mdb'}: the database is damaged ({exc}); copy it again or rebuild it")


def space_error(exc: BaseException, where: str | os.PathLike, hint: str) -> NoSpaceError | None:
    """A NoSpaceError for a write that failed for want of space (ENOSPC, EDQUOT, EFBIG, or LMDB's
    text of them), None for any other failure."""
    codes = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
             errno.EFBIG: "file size limit reached"}
    what = codes.get(getattr(exc, "errno", None) or 0)
    if what is None and isinstance(exc, lmdb.Error):
        text = str(exc)
        what = next((w for c, w in codes.items() if os.strerror(c) in text), None)
    if what is None:
        return None
    return NoSpaceError(f"{where}: {what} ({exc}); {hint}")


def iter_items(env: lmdb.Environment, keys_only: bool = False) -> Iterator[tuple[bytes, bytes | None]]:
    with env.begin(buffers=False) as txn:
        cur = txn.cursor()
        if keys_only:
            for key in cur.iternext(keys=True, values=False):
                yield key, None
        else:
            yield from cur


ABOUT = "about"  # in build.json: how to name the identity's parts in a message; not compared


def identity_diff(old: dict[str, Any], new: dict[str, Any], about: dict[str, str] | None = None) -> list[str]:
    """'key: was X, now Y' for each part of a build's identity that differs; a part named in the old
    or new `about` (e.g. the list's path) is shown with it."""
    old_about, about = old.get(ABOUT, {}) or {}, about or {}
    out = []
    # Records written before the image root was part of a build's identity do not hold it.
    skip = {ABOUT} | ({"root"} - set(old))
    for k in sorted((set(old) | set(new)) - skip):
        if old.get(k) != new.get(k):
            was = f"{old_about[k]} ({old.get(k)})" if k in old_about else repr(old.get(k))
            now = f"{about[k]} ({new.get(k)})" if k in about else repr(new.get(k))
            out.append(f"{k}: was {was}, now {now}")
    return out


class PartialDB:
    """Writer of `DB.partial/`: resumes a matching unfinished build, refuses a mismatched one."""

    def __init__(self, final: str | os.PathLike, identity: dict[str, Any], expected_bytes: int,
                 about: dict[str, str] | None = None) -> None:
        """`identity`: what the build is (compared on resume); `about`: how to name its parts in a
        refusal (e.g. the list's path beside its sha256), stored but not compared."""
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
            raise LockedError(f"another process is writing {self.path} (it holds {self._lock_path})") from None
        try:
            self._open(identity, expected_bytes, about)
        except BaseException:
            self._unlock()  # a refused or failed start must not keep others out
            raise

    def _open(self, identity: dict[str, Any], expected_bytes: int, about: dict[str, str] | None) -> None:
        """Resume a matching DB.partial, refuse a mismatched one, or start a new one."""
        info = self.path / BUILD_INFO
        if self.path.exists() and info.is_file():
            try:
                old = json.loads(info.read_text())
            except ValueError:
                raise TransferError(f"{info}: damaged; delete {self.path} to start over") from None
            diff = identity_diff(old, identity, about)
            if diff:
                raise TransferError(f"{self.path} holds an unfinished build of something else ("
                                    + "; ".join(diff) + f"); rerun with the earlier values to finish it, "
                                    f"or delete {self.path} to start over")
            self.resumed = True
            if (self.path / "data.mdb").is_file():
                try:
                    data_file_extent(self.path / "data.mdb")
                except TransferError as exc:
                    raise TransferError(f"{exc} (the unfinished build cannot resume: delete "
                                        f"{self.path} to start over)") from None
        elif self.path.exists():
            shutil.rmtree(self.path)  # created but died before recording what it was: nothing to keep
        if not self.resumed:
            self.path.mkdir(parents=True)
            record = {**identity, ABOUT: about or {}}
            atomic_write(info, json.dumps(record, indent=1, sort_keys=True) + "\n")
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
        self._psize = self.env.stat()["psize"]
        # Disk space is reserved (fallocate) ahead of each commit: with writemap, pages are written
        # through the map, and a page of a sparse file that finds the disk full is a SIGBUS.
        self._fd = os.open(self.path / "data.mdb", os.O_RDWR)
        self._reserved = (self.env.info()["last_pgno"] + 1) * self._psize

    def _reserve(self, items: list[tuple[bytes, bytes]]) -> None:
        """Allocate disk blocks for the pages a commit of `items` may add, so a full disk is an
        error here (ENOSPC) and never a SIGBUS while LMDB writes through its map."""
        ps = self._psize
        big = sum(-(-(len(v) + 16) // ps) for k, v in items if len(k) + len(v) > ps // 2)
        leaf = sum(len(k) + 24 + (0 if len(k) + len(v) > ps // 2 else len(v)) for k, v in items)
        pages = big + 2 * -(-leaf // (ps - 16)) + 32  # leaves half full at worst, branch copies, progress
        info = self.env.info()
        end = min((info["last_pgno"] + 1 + pages) * ps, info["map_size"])
        if end > self._reserved:
            try:
                os.posix_fallocate(self._fd, self._reserved, end - self._reserved)
            except OSError as exc:
                err = space_error(exc, self.path / "data.mdb", self._resume_hint())
                if err:
                    raise err from None
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            self._reserved = end

    def _resume_hint(self) -> str:
        return (f"{self.state['count']} images are kept in {self.path}; free space and run the same "
                "command again to continue")

    def commit(self, items: list[tuple[bytes, bytes]], state: dict[str, Any]) -> None:
        """Append Datums (keys increasing) and record progress atomically with them."""
        while True:
            try:
                self._reserve(items)
                with self.env.begin(write=True) as txn:
                    for key, value in items:
                        txn.put(key, value, append=True)
                    txn.put(PROGRESS_KEY, json.dumps(state).encode())
                break
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.Error as exc:
                err = space_error(exc, self.path / "data.mdb", self._resume_hint())
                if err:
                    raise err from None
                raise
        self.state = state

    def finish(self, manifest: dict[str, Any]) -> None:
        """Drop the progress record, write the manifest, rename to the final name (atomic)."""
        with self.env.begin(write=True) as txn:
            txn.delete(PROGRESS_KEY)
        self.env.sync(True)
        used = (self.env.info()["last_pgno"] + 1) * self.env.stat()["psize"]
        self.env.close()
        os.close(self._fd)
        self._fd = None
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
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is None:
            return
        self._lock_path.unlink(missing_ok=True)  # still held: a writer starting now makes a new one
        os.close(self._lock)
        self._lock = None
