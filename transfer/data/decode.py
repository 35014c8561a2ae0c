"""Decoding a list of images into raw Datums in parallel, block by block, in list order.

Workers are forked processes; each Datum goes back through a ring of shared-memory slots (only
its length through the pipe), so ~200 KB an image is never pickled. At most AHEAD blocks are
queued beyond the one being written: workers keep decoding while the writer commits, and memory
stays bounded however slow the disk is.
"""
from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import signal
from collections import deque
from typing import Any, Iterator

from ..caffe.env import caffe_pb2
from ..core.errors import TransferError
from .images import ImageError, datum_bytes, load_warped
from .imagesize import DEFAULT_MAX_PIXELS

# Blocks queued to the workers beyond the one being written: a commit waits on the disk (fsync), and
# the workers must have enough queued to stay busy meanwhile. Memory: (AHEAD + 1) blocks of Datums.
AHEAD = 4

Result = tuple[bytes | memoryview | int | None, str | None]  # (serialized Datum, None) or (None, reason)

_WORKER: dict[str, Any] = {}


def _init_worker(root: str, width: int, height: int, max_pixels: int, shm: mmap.mmap | None = None,
                 slot: int = 0) -> None:
    # OpenCV's own pixel limit, for formats whose header we cannot read (it is read at the first decode)
    os.environ["CV_IO_MAX_IMAGE_PIXELS"] = str(max_pixels)
    import cv2  # noqa: PLC0415 (keeps `transfer --help` fast)

    cv2.setNumThreads(1)  # one process a core already; OpenCV's own threads would only contend
    _WORKER.update(root=root, width=width, height=height, max_pixels=max_pixels, pb2=caffe_pb2(), shm=shm,
                   slot=slot)


def _convert(task: tuple[int, str, int]) -> Result:
    """(Datum, None) or (None, reason). With shared memory the Datum goes into the task's slot and
    only its length comes back."""
    index, path, label = task
    w = _WORKER
    try:
        img = load_warped(os.path.join(w["root"], path), w["width"], w["height"], w["max_pixels"])
        value = datum_bytes(w["pb2"], img, label)
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 (a decoder crash on one file is that file's problem)
        return None, f"{type(exc).__name__}: {exc}"
    shm, slot = w["shm"], w["slot"]
    if shm is None or len(value) > slot:
        return value, None
    shm[index * slot:index * slot + len(value)] = value
    return len(value), None


def decoded_blocks(tasks: list[tuple[str, int]], block: int, jobs: int, root: str,
                   width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[list[Result]]:
    """Results block by block, in order. A block's Datums are valid until the next block is asked
    for (their shared-memory slots are then reused). An image over `max_pixels` is not decoded."""
    if jobs <= 1:
        _init_worker(root, width, height, max_pixels)
        for s in range(0, len(tasks), block):
            yield [_convert((0, *t)) for t in tasks[s:s + block]]
        return
    yield from _pooled_blocks(tasks, block, jobs, root, width, height, max_pixels)


def _start_pool(jobs: int, initargs: tuple) -> Any:
    """A pool of forked decoding processes that never see SIGINT: Ctrl-C reaches this process alone,
    which stops them. (A worker that took the KeyboardInterrupt died with its task, the pool forked a
    new one and the build waited for ever, or went on to the end as if nothing had been pressed.) The
    workers are forked with SIGINT blocked, and keep it blocked."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return mp.get_context("fork").Pool(jobs, initializer=_init_worker, initargs=initargs)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _wait(pending: Any, workers: list[Any], start: int) -> list[Result]:
    """A block's results; a decoding process that died meanwhile (killed for memory, a crash in a
    decoder) is an error, not a wait for ever on the task it took with it."""
    while not pending.ready():
        pending.wait(1.0)
        dead = next((p for p in workers if p.exitcode is not None), None)
        if dead is not None and not pending.ready():
            code = dead.exitcode
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
            raise TransferError(f"a decoding process died ({how}) while decoding the images from place "
                                f"{start + 1} of the list on (out of memory? see the system log); "
                                "rerun to continue from the last commit")
    return pending.get()


def _pooled_blocks(tasks: list[tuple[str, int]], block: int, jobs: int, root: str,
                   width: int, height: int, max_pixels: int) -> Iterator[list[Result]]:
    starts = iter(range(0, len(tasks), block))
    slot = 3 * width * height + 64  # a raw Datum: the pixels and a few header bytes
    ring = (AHEAD + 1) * block      # slots of the block being written and of those queued
    shm = mmap.mmap(-1, ring * slot)  # anonymous, shared with the forked workers
    view = memoryview(shm)
    with _start_pool(jobs, (root, width, height, max_pixels, shm, slot)) as pool:
        workers = list(pool._pool)  # noqa: SLF001 (the processes, to notice one that dies)
        chunk = max(1, block // (jobs * 4))
        queued: deque = deque()

        def submit() -> None:
            s = next(starts, None)
            if s is not None:
                work = [((s + i) % ring, path, label) for i, (path, label) in enumerate(tasks[s:s + block])]
                queued.append((s, pool.map_async(_convert, work, chunk)))

        for _ in range(AHEAD):
            submit()
        while queued:
            s, pending = queued.popleft()
            results = _wait(pending, workers, s)
            submit()
            out: list[Result] = []
            for i, (value, reason) in enumerate(results):
                if isinstance(value, int):
                    at = (s + i) % ring * slot
                    value = view[at:at + value]
                out.append((value, reason))
            yield out
            del out, results
    try:
        view.release()
        shm.close()
    except BufferError:
        pass  # a caller still holds a Datum view; the map goes with the last reference
