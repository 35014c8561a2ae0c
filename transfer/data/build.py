"""`transfer data build`: a Caffe list's images decoded, warped and stored as raw Datums, as Caffe's
convert_imageset does; resumable and atomic (transfer/data/dbwrite.py).

Pixels come from transfer/data/images.py, decoded in parallel by transfer/data/decode.py.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..caffe.env import caffe_pb2
from ..core.errors import TransferError
from ..core.files import digest
from . import dbwrite
from .decode import decoded_blocks
from .images import Entry, read_list
from .imagesize import DEFAULT_MAX_PIXELS

log = dbwrite.log


def check_inside_root(entries: list[Entry], list_path: str, root: str) -> None:
    """Refuse a list line whose path is absolute or has a '..' component: it would read a file outside
    the image root (a list from elsewhere naming /etc/..., or ../other_set/...). A '..' is refused even
    where it stays inside textually: after a symlinked folder it climbs from the link's target.
    Symlinks under the root are followed: the root's owner put them there (class folders on other disks)."""
    for e in entries:
        if os.path.isabs(e.path):
            why = "is an absolute path"
        elif ".." in e.path.split("/"):
            why = "climbs out of the image root with '..'"
        else:
            continue
        raise TransferError(f"{list_path}:{e.line}: {e.path!r} {why}; a list's paths are read relative to "
                            f"--root {root}: fix the list, or pass --allow-outside-root to read it anyway")


def build(list_path: str, root: str, out: str, size: int = 256, shuffle: bool = False, seed: int = 0,
          jobs: int = 0, skip_bad: bool = False, block: int = dbwrite.DEFAULT_BLOCK,
          num_classes: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
          allow_outside_root: bool = False) -> Path:
    """Decode, warp and store every image of a Caffe list as convert_imageset does (resumable).
    A build carries its identity (list content, image root, options) and resumes only the same one.
    num_classes: the target's class count, which every label must be below. max_pixels: an image whose
    header says more is bad (a decompression bomb, or a damaged header), never decoded.
    allow_outside_root: accept list paths that are absolute or climb out of `root` with '..'."""
    caffe_pb2()  # fail before any work if Caffe is not configured
    dbwrite.check_options(block, seed)
    if size < 1:
        raise TransferError(f"--size must be positive, got {size}")
    if max_pixels < 1:
        raise TransferError(f"--max-pixels must be at least 1, got {max_pixels}")
    if jobs < 0:
        raise TransferError(f"--jobs must be 0 (every core) or more, got {jobs}")
    if not Path(root).is_dir():
        raise TransferError(f"image root {root} is not a directory")
    entries = read_list(list_path, num_classes)
    if not allow_outside_root:
        check_inside_root(entries, list_path, root)
    identity = {"kind": "build", "list_sha256": digest(list_path), "root": os.path.realpath(root),
                "size": [size, size], "shuffle": bool(shuffle), "seed": seed if shuffle else None}
    about = {"list_sha256": str(list_path)}
    out_p = Path(out)
    if dbwrite.up_to_date(out_p, identity, about):
        log.info("%s is up to date", out)
        return out_p
    out_p.parent.mkdir(parents=True, exist_ok=True)
    order = dbwrite.order_entries(entries, shuffle, seed)
    dbwrite.check_space(out_p, len(order), (3, size, size))
    writer = dbwrite.start(out_p, identity, dbwrite.estimate_bytes(len(order), 3, size, size), about)
    with dbwrite.writing(writer.path, writer.path, writer, catch=(BaseException,)):
        todo = [(e.path, e.label) for e in order[writer.state["next"]:]]
        jobs = jobs or len(os.sched_getaffinity(0))  # the cores we may use, not all the machine has
        results = decoded_blocks(todo, block, jobs, root, size, size, max_pixels)
        state = dbwrite.write_all(writer, order, results, list_path,
                                  lambda e: os.path.join(root, e.path), skip_bad, f"build {out_p.name}")
    manifest = {"identity": identity, "tool": "transfer data build",
                "datum": {"channels": 3, "height": size, "width": size, "encoded": False},
                "list": {"path": str(list_path), "sha256": identity["list_sha256"], "lines": len(entries)},
                "options": {"root": str(root), "size": size, "shuffle": bool(shuffle), "seed": seed,
                            "skip_bad": bool(skip_bad), "jobs": jobs, "max_pixels": max_pixels,
                            "allow_outside_root": bool(allow_outside_root)}}
    dbwrite.finish(writer, state, manifest, skip_bad)
    return out_p
