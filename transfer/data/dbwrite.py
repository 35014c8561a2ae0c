"""The loop every database writer shares (build, derive, relabel): order, up-to-date check, the
block-by-block writes into `DB.partial/`, the manifest, and a full disk turned into an error.

The writers themselves: transfer/data/build.py (decoding images), transfer/data/derive.py (from a
finished database, nothing decoded); the resumable, atomic database: transfer/data/lmdb_store.py.
"""
from __future__ import annotations

import shutil
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import lmdb
import numpy as np

from ..core.argtypes import SEED_MAX
from ..core.console import Progress, stage
from ..core.errors import NoSpaceError, TransferError
from ..core.files import atomic_write, size_text
from .decode import Result
from .images import Entry
from .lmdb_store import MANIFEST, PartialDB, datum_key, identity_diff, read_manifest, space_error

FORMAT = "transfer-lmdb/1"
DEFAULT_BLOCK = 250  # images a commit (~50 MB at 256x256); also the unit of work handed to the pool
log = stage("data")


def check_options(block: int, seed: int = 0) -> None:
    """Options every writer takes, checked before anything is written (the command line's types check
    them too; this is for callers in code)."""
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise TransferError(f"--commit-every must be a whole number of at least 1, got {block!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise TransferError(f"--seed must be in 0..{SEED_MAX}, got {seed!r}")


def order_entries(entries: list[Entry], shuffle: bool, seed: int) -> list[Entry]:
    """List order, or a permutation fixed by the seed (convert_imageset --shuffle, made reproducible)."""
    if not shuffle:
        return entries
    perm = np.random.RandomState(seed).permutation(len(entries))
    return [entries[i] for i in perm]


def estimate_bytes(n: int, channels: int, height: int, width: int) -> int:
    """The LMDB map to start with for n raw Datums (generous: the map grows when it fills)."""
    page = 4096  # a Datum bigger than a page goes to its own overflow pages
    return n * (-(-(channels * height * width + 64) // page) + 1) * page


def datum_disk_bytes(channels: int, height: int, width: int, key: int = 64) -> int:
    """Disk an LMDB of raw Datums takes an image: a Datum bigger than half a page goes to its own overflow
    pages (16 bytes of header), its leaf node (key, 24 bytes) shares a leaf page; a smaller one lives in
    the leaf. Leaves are taken as half full (their worst case after splits)."""
    page = 4096
    value = channels * height * width + 24   # the pixels and the Datum's fields around them
    if key + value > page // 2:
        return -(-(value + 16) // page) * page + 2 * (key + 24 + 8)
    return 2 * (key + value + 24)


def allocated(path: Path) -> int:
    """Bytes of disk a file (or every file of a folder) holds: the blocks, not the sparse length."""
    if path.is_dir():
        return sum(p.stat().st_blocks * 512 for p in path.iterdir() if p.is_file())
    return path.stat().st_blocks * 512 if path.is_file() else 0


def db_bytes(count: int, shape: tuple[int, int, int]) -> int:
    """Disk a finished database of `count` raw Datums of `shape` takes (an estimate)."""
    return count * datum_disk_bytes(*shape) + 4 * 4096   # and the two meta pages, a root, a branch


def to_write(out: Path, count: int, shape: tuple[int, int, int]) -> int:
    """Bytes still to write for a database of `count` Datums at `out`: none when it is finished (or a link
    to one), less what an unfinished build already holds in `out.partial/`."""
    if out.exists() or out.is_symlink():
        return 0
    return max(0, db_bytes(count, shape) - allocated(Path(str(out) + ".partial")))


def free_space(path: Path) -> tuple[int, Path]:
    """(bytes free, the existing folder measured) on the file system `path` will be written to."""
    where = path
    while not where.exists() and where != where.parent:
        where = where.parent
    return shutil.disk_usage(where).free, where


def check_space(out: Path, count: int, shape: tuple[int, int, int]) -> None:
    """Refuse, before anything is written, a database the disk cannot hold (estimated from its Datums):
    a build that starts anyway fills the disk to its last byte before it stops, and other programs there
    fail meanwhile."""
    need = to_write(out, count, shape)
    free, where = free_space(out.parent)
    if need > free:
        held = Path(str(out) + ".partial")
        kept = f" beyond the {size_text(allocated(held))} {held} holds" if held.exists() else ""
        raise NoSpaceError(f"{out}: its {count:,} images of {'x'.join(map(str, shape))} need about "
                           f"{size_text(need)}{kept}, and {where} has {size_text(free)} free; free space or "
                           "write the database elsewhere")


def up_to_date(out: Path, identity: dict[str, Any], about: dict[str, str] | None = None) -> bool:
    """Whether `out` is a finished database of this identity; another one there is refused."""
    if not out.exists():
        return False
    if not (out / MANIFEST).is_file():
        raise TransferError(f"{out} already exists but has no {MANIFEST} (not made by transfer); delete it")
    m = read_manifest(out)
    old = dict(m.get("identity") or {})
    old["about"] = {"list_sha256": m.get("list", {}).get("path", "?"), **old.get("about", {})}
    diff = identity_diff(old, identity, about)
    if not diff:
        return True
    raise TransferError(f"{out} already exists and was not built from this list with these options ("
                        + "; ".join(diff) + "); delete it to rebuild")


@contextmanager
def writing(where: Path, partial: Path | None = None, writer: PartialDB | None = None,
            catch: tuple[type[BaseException], ...] = (OSError, lmdb.Error)) -> Iterator[None]:
    """Writes inside: on an error the writer is closed, and a full disk becomes a NoSpaceError naming
    `where` and what is kept (`partial`); any other error passes unchanged."""
    try:
        yield
    except catch as exc:
        if writer is not None:
            writer.close()
        hint = (f"what was written is kept in {partial}; free space and run the same command again to continue"
                if partial else "nothing was replaced; free space and run the same command again")
        err = space_error(exc, where, hint)
        if err is None:
            raise
        raise err from None


def write_all(writer: PartialDB, order: list[Entry], results: Iterator[list[Result]], list_path: str,
              describe: Callable[[Entry], str], skip_bad: bool, what: str) -> dict[str, Any]:
    """Write results (in `order`, from position writer.state['next']) one commit per block."""
    state = writer.state
    labels = Counter({int(k): v for k, v in state["labels"].items()})
    skipped = list(state["skipped"])
    count, pos = state["count"], state["next"]
    if writer.resumed:
        log.info("%s: resuming %s at %d/%d", what, writer.path, pos, len(order))
    progress = Progress(what, len(order), pos)

    def snapshot(next_pos: int) -> dict[str, Any]:
        return {"next": next_pos, "count": count, "skipped": skipped,
                "labels": {str(k): v for k, v in sorted(labels.items())}}

    try:
        for block_results in results:
            items = []
            for result in block_results:
                entry = order[pos]
                value, reason = result
                if value is None:
                    if not skip_bad:
                        writer.commit(items, snapshot(pos))  # keep the good images before it
                        raise TransferError(
                            f"{list_path}:{entry.line}: {describe(entry)}: {reason} (the images before "
                            f"it are kept in {writer.path}; fix it and rerun to continue, or pass --skip-bad)")
                    skipped.append([entry.line, entry.path, reason])
                else:
                    items.append((datum_key(pos, entry.path), value))
                    labels[entry.label] += 1
                    count += 1
                pos += 1
            writer.commit(items, snapshot(pos))
            progress.update(pos)
    finally:
        progress.close()
    return snapshot(pos)


def finish(writer: PartialDB, state: dict[str, Any], manifest: dict[str, Any], skip_bad: bool) -> None:
    """The skipped-images report, the manifest, and the rename of DB.partial to DB."""
    out = writer.final
    report = None
    if skip_bad:
        report = out.with_name(out.name + ".skipped.tsv")
        lines = ["line\tpath\treason"] + [f"{ln}\t{p}\t{r}" for ln, p, r in state["skipped"]]
        atomic_write(report, "\n".join(lines) + "\n")
    if state["count"] == 0:
        writer.close()  # its lock goes; DB.partial stays, holding the progress (every image skipped)
        raise TransferError(f"no image of {manifest['list']['path']} could be used; nothing to write")
    manifest.update(format=FORMAT, count=state["count"], labels=state["labels"],
                    num_labels=len(state["labels"]), skipped=len(state["skipped"]),
                    skipped_report=report.name if report else None, key_format="%08d_%s",
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    with writing(writer.path, writer.path, writer):
        writer.finish(manifest)
    if state["skipped"]:
        log.info("skipped %d images, listed in %s", len(state["skipped"]), report)


def start(out: Path, identity: dict[str, Any], expected: int, about: dict[str, str] | None = None) -> PartialDB:
    """The writer of out.partial/; a full disk at its start is a NoSpaceError naming it."""
    partial = Path(str(out) + ".partial")
    with writing(partial, partial if partial.exists() else None):
        return PartialDB(out, identity, expected, about)
