"""Images/s that Caffe's Data layer delivers from a derived set stored as a copy against the same set read
as a view of the whole set's LMDB (data_param label_map_file), and the disk the copy takes.

    python benchmarks/bench_view.py [--per-class 128] [--batches 40] [--work DIR]

The whole set: 20 synthetic classes decoded once into 3x256x256 Datums (ImageNet's size). Three derived
sets: every class relabelled to 5 labels (a coarse label set: the view reads what the copy reads), half the
classes kept, and 2 of the 20 kept (the view parses and skips the rest). Each database is read once before
timing, so both come from the page cache. Needs the project's Caffe (`make caffe`).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from transfer.data import synthetic
from transfer.data.build import build
from transfer.data.derive import relabel
from transfer.caffe.env import import_caffe

CLASSES = 20
CASES = {
    "coarse label set (all 20 classes -> 5 labels)": {c: c // 4 for c in range(CLASSES)},
    "half the classes (10 of 20)": {c: c // 2 for c in range(0, CLASSES, 2)},
    "a tenth of the classes (2 of 20)": {0: 0, 10: 1},
}


def net_file(path: Path, source: Path, batch: int, labels: Path | None) -> Path:
    view = f'    label_map_file: "{labels}"\n' if labels else ""
    path.write_text(f'layer {{ name: "data" type: "Data" top: "data" top: "label"\n'
                    f'  data_param {{ source: "{source}" batch_size: {batch} backend: LMDB\n{view}  }} }}\n')
    return path


def rate(caffe, net_path: Path, batches: int, batch: int) -> float:
    net = caffe.Net(str(net_path), caffe.TEST)
    for _ in range(3):                 # warm-up: page cache, prefetch thread
        net.forward()
    t0 = time.perf_counter()
    for _ in range(batches):
        net.forward()
    dt = time.perf_counter() - t0
    del net
    return batches * batch / dt


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-class", type=int, default=128)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "transfer-bench-view"))
    a = ap.parse_args()
    work = Path(a.work)
    syn = synthetic.make_synthetic(work / "syn", num_classes=CLASSES, train_per_class=a.per_class,
                                   val_per_class=1, size=64)
    whole = build(str(syn / "train.txt"), str(syn), str(work / f"whole{a.per_class}"), size=256,
                           shuffle=True, jobs=0)
    caffe = import_caffe()
    caffe.set_mode_cpu()
    print(f"whole set: {CLASSES * a.per_class} Datums of 3x256x256 ({du(whole) / 2**20:.0f} MiB); "
          f"{a.batches} batches of {a.batch}, CPU")
    print("| derived set | copy: images/s | view: images/s | view / copy | copy on disk |")
    print("|---|---|---|---|---|")
    for i, (name, label_map) in enumerate(CASES.items()):
        copy = relabel(str(whole), label_map, str(work / f"copy{a.per_class}-{i}"))
        labels = work / f"labels{i}.txt"
        labels.write_text("".join(f"{o} {n}\n" for o, n in label_map.items()))
        rc = rate(caffe, net_file(work / f"c{i}.prototxt", copy, a.batch, None), a.batches, a.batch)
        rv = rate(caffe, net_file(work / f"v{i}.prototxt", whole, a.batch, labels), a.batches, a.batch)
        print(f"| {name} | {rc:,.0f} | {rv:,.0f} | {rv / rc:.2f} | {du(copy) / 2**20:.0f} MiB |")


if __name__ == "__main__":
    main()
