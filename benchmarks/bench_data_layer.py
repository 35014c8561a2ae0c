"""Images/s of Caffe's Data layer alone, on the CPU, by transform thread count (data_param transform_threads).

    python benchmarks/bench_data_layer.py [--images 1024] [--batches 12] [--threads 1,2,4] [--baseline-root DIR]

The paper's training input: 3x256x256 Datums from an LMDB, batch 256, crop 227, mirror, mean file
(ImageNet-sized images of the synthetic dataset). Each case runs in its own process: the Net is made,
the prefetch queue drained, then `--batches` forward passes are timed, so the figure is what the
layer delivers in steady state (its reader thread parses the Datums, the transform crops them).
`--baseline-root` times another Caffe build the same way (e.g. one without the batch transform, whose
one prefetch thread transforms images one after another) as the yardstick of the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from transfer.caffe import env as caffe_env
from transfer.data import synthetic
from transfer.data.build import build
from transfer.data.means import compute_mean

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import caffe
caffe.set_mode_cpu()
caffe.set_random_seed(1)
net = caffe.Net(sys.argv[2], caffe.TRAIN)
batches, batch = int(sys.argv[3]), int(sys.argv[4])

def cpu():
    # CPU seconds of every live thread (utime + stime of /proc/self/task/*/stat).
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out

for _ in range(4):              # the prefetched batches, then steady state
    net.forward()
c0, t0 = cpu(), time.perf_counter()
for _ in range(batches):
    net.forward()
wall, c1 = time.perf_counter() - t0, cpu()
threads = {t: (c1[t] - c0.get(t, 0.0)) * 1000 / batches for t in c1}
main = threads.pop(os.getpid(), 0.0)
print(json.dumps({"images_per_s": batches * batch / wall, "ms_per_batch": wall * 1000 / batches,
                  "cpu_ms_per_batch": {"main": main, "others": sorted(threads.values(), reverse=True)}}))
"""


def net_file(path: Path, source: Path, mean: Path, batch: int, threads: int | None) -> Path:
    extra = f" transform_threads: {threads}" if threads is not None else ""
    path.write_text(f'layer {{ name: "data" type: "Data" top: "data" top: "label"\n'
                    f'  transform_param {{ mirror: true crop_size: 227 mean_file: "{mean}" }}\n'
                    f'  data_param {{ source: "{source}" batch_size: {batch} backend: LMDB{extra} }} }}\n')
    return path


def imagenet_sized(work: Path, images: int) -> tuple[Path, Path]:
    """(LMDB, mean file) of `images` synthetic Datums of 3x256x256 under `work`, made once and reused."""
    classes = 16
    syn = synthetic.make_synthetic(work / "syn", num_classes=classes, train_per_class=max(1, images // classes),
                                   val_per_class=1, size=64)
    db = Path(build(str(syn / "train.txt"), str(syn), str(work / f"train{images}"), size=256, jobs=0))
    mean = work / f"mean{images}.binaryproto"    # one per database: a rerun with another size gets its own
    if not mean.is_file():
        compute_mean(str(db), str(mean))
    return db, mean


def measure(root: Path, net: Path, batches: int, batch: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(root / "python"), str(net), str(batches), str(batch)],
                         capture_output=True, text=True, env={**os.environ, "GLOG_minloglevel": "2"})
    if out.returncode:
        sys.exit(f"bench_data_layer: the Data layer failed with {root}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", default="1,2,4")
    ap.add_argument("--baseline-root", type=Path, help="another Caffe build (BVLC layout) to time the same way")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "transfer-bench-data-layer")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    db, mean = imagenet_sized(a.work, a.images)
    root = caffe_env.caffe_root()
    print(f"{a.images} Datums of 3x256x256, batch {a.batch}, crop 227, mirror, mean file; "
          f"{a.batches} batches timed; {os.cpu_count()} CPUs")
    print("| Caffe | transform threads | images/s | x one thread |")
    print("|---|---|---|---|")
    if a.baseline_root:
        base = measure(a.baseline_root, net_file(a.work / "base.prototxt", db, mean, a.batch, None), a.batches, a.batch)
        print(f"| baseline ({a.baseline_root.name}) | 1 (Caffe's own, sequential) | {base['images_per_s']:,.0f} | |")
    runs = {}
    for t in threads:
        runs[t] = measure(root, net_file(a.work / f"t{t}.prototxt", db, mean, a.batch, t), a.batches, a.batch)
        r, first = runs[t]["images_per_s"], runs[threads[0]]["images_per_s"]
        print(f"| this build | {t} | {r:,.0f} | {r / first:.2f} |")
    if 1 in runs:
        print(projection(runs[1], a.batch))


def projection(one: dict, batch: int) -> str:
    """Where the time of a batch goes with one transform thread, and what that allows with more cores.

    With one thread the transform runs inside the prefetch thread, so the live threads are: the main
    thread (pycaffe's forward: on the CPU, a copy of the batch into the net's blob; on a GPU a
    device-to-device copy), the reader (LMDB cursor, Datum parsing) and the prefetch thread (the
    transform). With N threads on N free cores the prefetch thread's work divides by N; the reader's
    does not, so it bounds the layer: images/s <= batch / reader ms. A model, not a measurement."""
    cpu = one["cpu_ms_per_batch"]
    others = cpu["others"] + [0.0, 0.0]
    prefetch, reader = others[0], others[1]   # the transform is the largest share (checked below)
    lines = [f"One transform thread, CPU ms a batch: main thread {cpu['main']:.1f}, prefetch thread "
             f"(transform) {prefetch:.1f}, reader {reader:.1f} (wall {one['ms_per_batch']:.1f} ms a batch).",
             "Projected for a node's free cores (the reader and the prefetch thread's transform split N ways):"]
    for n in (4, 8, 16):
        ms = max(reader, prefetch / n)
        lines.append(f"  {n:2d} transform threads: <= {batch / ms * 1000:,.0f} images/s"
                     f" (bound by the {'reader' if reader >= prefetch / n else 'transform'})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
