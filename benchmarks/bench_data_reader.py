"""The Data layer's reader thread in two Caffe builds, side by side: CPU ms a batch and images/s.

    python benchmarks/bench_data_reader.py --before ~/.cache/transfer/caffe/<key> [--after DIR] [--rounds 3]

The same net file (batch 256 of 3x256x256 Datums, crop 227, mirror, mean file, one transform thread, so
the live threads are main, prefetch and reader: bench_data_layer.py) timed with each build in turn,
alternating, `--rounds` times: a noisy machine then shows in every round, not in one build's figure.
`--after` defaults to the recorded build (`make caffe`).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_data_layer import imagenet_sized, measure, net_file

from transfer.caffe import env as caffe_env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="a Caffe build (BVLC layout) with transform_threads")
    ap.add_argument("--after", type=Path, help="another one (default: the recorded build)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "transfer-bench-data-layer")
    a = ap.parse_args()
    db, mean = imagenet_sized(a.work, a.images)
    net = net_file(a.work / "t1.prototxt", db, mean, 256, 1)
    roots = {"before": a.before, "after": a.after or caffe_env.caffe_root()}
    print(f"before: {roots['before']}\nafter:  {roots['after']}\n")
    print("| round | reader CPU ms a batch: before | after | transform CPU ms: before | after "
          "| images/s: before | after |\n|---|---|---|---|---|---|---|")
    for rnd in range(a.rounds):
        got = {name: measure(root, net, a.batches, 256) for name, root in roots.items()}
        # Live threads besides main: the prefetch thread (the transform, the largest), then the reader.
        cpu = {name: r["cpu_ms_per_batch"]["others"] + [0.0, 0.0] for name, r in got.items()}
        print(f"| {rnd} | {cpu['before'][1]:.1f} | {cpu['after'][1]:.1f} | {cpu['before'][0]:.1f} | "
              f"{cpu['after'][0]:.1f} | {got['before']['images_per_s']:,.0f} | {got['after']['images_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
