"""Forward runs in child processes, several at once: each child runs one net with pycaffe on one image
set and writes its cache file (activations.run_and_save).

A fatal Caffe CHECK (weights that do not fit the net file, a damaged file) ends only its child, and
comes back as an error naming the net and Caffe's message; the other children finish first, so their
work is kept. pycaffe is imported once in the parent (children inherit it); GPU mode is set in each
child only, so the parent never holds a CUDA context across fork. Each child sets its BLAS libraries to
`threads` threads (threads.py): children share the cores.
"""
from __future__ import annotations

import faulthandler
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..caffe.env import import_caffe
from ..core.errors import TransferError
from ..core.files import shown
from ..caffe.logs import describe_exit, first_error
from ..plan.model import LAYERS, Net
from .activations import Grams, Job, is_cached, job, load_cached, run_and_save
from .imageset import ImageSet
from .threads import set_blas_threads


@dataclass(frozen=True)
class Options:
    parallel: int = 1             # children at once
    gpu: int | None = None        # None: CPU
    threads: int | None = None    # BLAS threads a child; None: the libraries' default (every core)


def _start(j: Job, opts: Options) -> tuple[int, Path]:
    tmp = Path(tempfile.mkdtemp(prefix="transfer-analysis-"))
    output = tmp / "caffe.log"
    pid = os.fork()
    if pid == 0:   # the child: pycaffe, its glog lines into `output`
        code = 1
        faulthandler.disable()   # Caffe's abort is reported from the log, not as a Python dump
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 2)
            if opts.threads:
                set_blas_threads(opts.threads)
            run_and_save(j, opts.gpu)
            code = 0
        except BaseException as exc:  # noqa: BLE001 (reported through the output file)
            os.write(2, f"E {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(code)
    return pid, tmp


def _failure(j: Job, status: int, output: Path) -> TransferError:
    rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    first = first_error(output)
    why = (first.text + (f" [{first.where}]" if first.where else "")) if first else \
        (output.read_text(errors="replace").strip()[-500:] if output.is_file() else "") or "no message"
    return TransferError(f"net '{j.net.name}': activations of {shown(j.weights)} on {j.images.name} failed "
                         f"({describe_exit(rc)}): {why}")


def _wait_any(pids: list[int]) -> tuple[int, int]:
    """(pid, status) of the first of our children to end (never reaps a child that is not ours)."""
    while True:
        for pid in pids:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                return got, status
        time.sleep(0.05)


def run_jobs(jobs: list[Job], opts: Options, done: Callable[[Job], None] = lambda j: None) -> None:
    """Compute every job not cached yet, `opts.parallel` children at once; raises the first failure
    once every child has ended."""
    todo = [j for j in jobs if not is_cached(j)]
    if not todo:
        return
    import_caffe()   # once, here: each child inherits the loaded module (it makes no CUDA context)
    running: dict[int, tuple[Job, Path]] = {}
    errors: list[TransferError] = []
    while todo or running:
        while todo and len(running) < max(1, opts.parallel):
            j = todo.pop(0)
            pid, tmp = _start(j, opts)
            running[pid] = (j, tmp)
        pid, status = _wait_any(list(running))
        j, tmp = running.pop(pid)
        if status != 0:
            errors.append(_failure(j, status, tmp / "caffe.log"))
        elif not is_cached(j):
            errors.append(TransferError(f"net '{j.net.name}': {shown(j.path)} was not written"))
        else:
            done(j)
        shutil.rmtree(tmp, ignore_errors=True)
    if errors:
        raise errors[0]


def net_grams(net: Net, weights: Path, images: ImageSet, layers: list[str] = LAYERS,
              opts: Options = Options()) -> Grams:
    """One net's Gram matrices on `images`: from the cache, else computed (in a child) and cached."""
    j = job(net, weights, images, layers)
    fresh = not is_cached(j)
    run_jobs([j], opts)
    grams = load_cached(j.path, j.identity)
    if grams is None:
        raise TransferError(f"net '{net.name}': {shown(j.path)} cannot be read back")
    grams.meta["fresh"] = fresh
    return grams
