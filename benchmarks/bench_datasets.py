"""Images/s of `transfer data build` against Caffe's convert_imageset, side by side in one run.

    make bench-tools      # once: Debian's OpenCV and Caffe's convert_imageset built with it
    python benchmarks/bench_datasets.py [--images 2000] [--jobs 0] [--work DIR] [--convert-imageset auto]

The corpus: ImageNet-like JPEGs (500x375, quality 90, ~80 KB of textured content), generated once and
cached under --work (default: $TMPDIR/transfer-bench-datasets). The baseline does what convert_imageset
does, in one process: cv::imread, cv::resize to 256x256, Datum, LMDB put, commit every 1000. The yardstick
is the real convert_imageset (`--resize_height 256 --resize_width 256`, the same list, no shuffle), built by
scripts/build-convert-imageset.sh (`auto`: when `make bench-tools` has been run); its database and ours
are compared record by record, so the ratio is of the same work. Needs caffe_pb2 (Caffe configured, or CAFFE_ROOT pointing at a root with python/caffe/proto/caffe_pb2.py).
"""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import tempfile
import time
from itertools import zip_longest
from pathlib import Path

import cv2
import lmdb
import numpy as np
from PIL import Image

from transfer import REPO
from transfer.data.build import build
from transfer.caffe.env import caffe_pb2
from transfer.data.images import datum_bytes, read_list
from transfer.data.lmdb_store import datum_key, iter_items, open_read

W, H, SIZE = 500, 375, 256
CORPUS_VERSION = 1


def _image(i: int) -> bytes:
    """Sinusoidal colour fields + coarse and fine noise: JPEG sizes like ILSVRC photos (~80 KB)."""
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    out = np.empty((H, W, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.005, 0.05), rng.uniform(0.005, 0.05), rng.uniform(0, 6)
        out[..., c] = 127 + 80 * np.sin(x * fx + y * fy + ph)
    coarse = rng.standard_normal((H // 4, W // 4, 3), np.float32)
    out += 40 * cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    out += rng.standard_normal((H, W, 3), np.float32) * 9
    buf = io.BytesIO()
    Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _write(args: tuple[Path, int]) -> int:
    root, i = args
    data = _image(i)
    (root / f"n{i % 10:08d}" / f"img_{i:06d}.JPEG").write_bytes(data)
    return len(data)


def corpus(work: Path, n: int) -> tuple[Path, Path]:
    root = work / f"corpus-v{CORPUS_VERSION}-{n}"
    lst = root / "files.txt"
    if not lst.is_file():
        t = time.time()
        for d in range(10):
            (root / f"n{d:08d}").mkdir(parents=True, exist_ok=True)
        with mp.Pool() as pool:
            sizes = pool.map(_write, [(root, i) for i in range(n)], chunksize=16)
        lines = [f"n{i % 10:08d}/img_{i:06d}.JPEG {i % 10}" for i in range(n)]
        lst.write_text("\n".join(lines) + "\n")
        print(f"corpus: {n} JPEGs {W}x{H}, mean {np.mean(sizes) / 1e3:.0f} KB, made in {time.time() - t:.0f} s")
    return root, lst


def baseline(root: Path, lst: Path, out: Path) -> int:
    """convert_imageset's loop in one process (same OpenCV calls, same Datums, same commits)."""
    pb2 = caffe_pb2()
    cv2.setNumThreads(1)
    env = lmdb.open(str(out), map_size=1 << 34)
    txn = env.begin(write=True)
    count = 0
    for pos, e in enumerate(read_list(lst)):
        img = cv2.resize(cv2.imread(str(root / e.path), cv2.IMREAD_COLOR), (SIZE, SIZE))
        txn.put(datum_key(pos, e.path), datum_bytes(pb2, img, e.label))
        count += 1
        if count % 1000 == 0:
            txn.commit()
            txn = env.begin(write=True)
    txn.commit()
    env.close()
    return count


def find_convert_imageset(arg: str) -> Path | None:
    """The convert_imageset to run: a path, none, or (auto) the one scripts/build-convert-imageset.sh builds."""
    if arg == "none":
        return None
    if arg != "auto":
        return Path(arg)
    proc = subprocess.run([str(REPO / "scripts" / "build-convert-imageset.sh")], capture_output=True, text=True)
    if proc.returncode:
        print(f"convert_imageset: not available ({proc.stderr.strip().splitlines()[-1]}); `make bench-tools` builds it")
        return None
    return Path(proc.stdout.strip().splitlines()[-1])


def convert_imageset(tool: Path, root: Path, lst: Path, out: Path) -> None:
    proc = subprocess.run([str(tool), "--resize_height=256", "--resize_width=256", "--backend=lmdb",
                           f"{root}/", str(lst), str(out)], capture_output=True, text=True,
                          env={**os.environ, "GLOG_minloglevel": "1"})
    if proc.returncode:
        raise SystemExit(f"convert_imageset failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")


def same_records(a: Path, b: Path) -> bool:
    """Whether two LMDBs hold the same keys with the same bytes (record by record, not all in memory)."""
    with open_read(a) as ea, open_read(b) as eb:
        return all(x == y for x, y in zip_longest(iter_items(ea), iter_items(eb)))


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=0, help="decoding processes for our builder (0: all cores)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "transfer-bench-datasets")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the best is reported")
    ap.add_argument("--db-dir", type=Path, help="where the databases are written (default: --work); "
                    "a tmpfs such as /dev/shm takes the disk out of the measurement")
    ap.add_argument("--convert-imageset", default="auto", help="PATH, auto (make bench-tools' build) or none")
    a = ap.parse_args()
    root, lst = corpus(a.work, a.images)
    tool = find_convert_imageset(a.convert_imageset)
    # Warm the page cache so both sides read the same way (the first run would otherwise pay the disk).
    for p in root.rglob("*.JPEG"):
        p.read_bytes()
    cores = len(os.sched_getaffinity(0))
    runs: dict[str, list[float]] = {"baseline (1 process)": [], f"transfer data build (jobs={a.jobs or cores})": []}
    if tool:
        runs = {"convert_imageset (Caffe's, 1 process)": [], **runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    load0 = os.getloadavg()[0]
    for _ in range(a.repeat):
        for name in runs:
            out = (a.db_dir or a.work) / "bench-db"
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(str(out) + ".partial", ignore_errors=True)
            t, c = time.perf_counter(), _cpu()
            if name.startswith("convert_imageset"):
                convert_imageset(tool, root, lst, out)
                shutil.rmtree((a.db_dir or a.work) / "convert-db", ignore_errors=True)
                out.rename((a.db_dir or a.work) / "convert-db")
            elif name.startswith("baseline"):
                baseline(root, lst, out)
            else:
                build(str(lst), str(root), str(out), size=SIZE, jobs=a.jobs)
            runs[name].append(time.perf_counter() - t)
            cpu[name].append(_cpu() - c)
    identical = same_records((a.db_dir or a.work) / "convert-db", (a.db_dir or a.work) / "bench-db") if tool else None
    shutil.rmtree((a.db_dir or a.work) / "bench-db", ignore_errors=True)
    shutil.rmtree((a.db_dir or a.work) / "convert-db", ignore_errors=True)
    rates = {}
    print(f"{a.images} images {W}x{H} -> {SIZE}x{SIZE} Datums into {a.db_dir or a.work}, {cores} cores, "
          f"best of {a.repeat}, "
          f"load average {load0:.1f} before / {os.getloadavg()[0]:.1f} after:")
    for name, times in runs.items():
        rates[name] = a.images / min(times)
        per = min(cpu[name]) / a.images * 1e3
        print(f"  {name:40s} {min(times):6.2f} s  {rates[name]:7.0f} images/s  {per:5.2f} CPU-ms/image")
    *_, base, ours = rates.values()
    print(f"  ratio ours/baseline {ours / base:.2f}x")
    if tool:
        ci = next(iter(rates.values()))
        print(f"  ratio ours/convert_imageset {ours / ci:.2f}x (2 cores: at most about 2x); "
              f"databases {'byte-identical' if identical else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
