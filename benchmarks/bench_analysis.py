"""What `transfer analyze` costs: a plan's whole analysis from a cold and a warm cache, beside the time
Caffe spent in forward passes in the same run (the yardstick), and, at the paper's scale, the parts
of one batch of CaffeNet (transform, forward pass, Gram matrices) on this machine.

    python benchmarks/bench_analysis.py --plan small            # the plan's nets must be DONE (make demo)
    python benchmarks/bench_analysis.py --paper-batch 50        # CaffeNet 227x227 with random weights

The plan part deletes the analysis caches of the plan's run directories first (they are rebuilt).
"""
from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from transfer import REPO
from transfer.core import console
from transfer.analysis import compute
from transfer.analysis.activations import deploy
from transfer.analysis.analyze import analyze
from transfer.analysis.cka import gram
from transfer.analysis.threads import set_blas_threads
from transfer.caffe.env import caffe_pb2, import_caffe
from transfer.plan.model import LAYERS, load_plan


def plan_run(plan_name: str, out: Path) -> None:
    plan = load_plan(plan_name)
    for net in plan.nets:
        shutil.rmtree(net.run.analysis_dir, ignore_errors=True)
    for label in ("cold cache", "warm cache"):
        t0 = time.perf_counter()
        res = analyze(plan_name, out)
        wall = time.perf_counter() - t0
        s = res.seconds
        fwd = s["forward_seconds_computed"]
        ratio = f"{wall / fwd:.1f}x" if fwd else "-"
        print(f"| {plan_name}, {label} | {wall:.1f} s | {s['forward_runs_computed']}/{s['forward_runs']} | "
              f"{fwd:.1f} s | {ratio} | activations {s['activations']:.1f} s, pairs {s['pairs']:.1f} s, "
              f"movement {s['movement']:.1f} s, figures and file the rest |")


def paper_batch(batch: int, repeat: int) -> None:
    """One batch of the paper's CaffeNet through the analysis's own deploy net and transform (random
    weights; the paper's mean file replaced by a flat one, which costs the same)."""
    caffe = import_caffe()
    caffe.set_mode_cpu()
    net = load_plan("paper").net("base-half0B")
    with tempfile.TemporaryDirectory() as tmp:
        mean = Path(tmp) / "mean.binaryproto"
        blob = caffe_pb2().BlobProto(num=1, channels=3, height=256, width=256)
        blob.data.extend([110.0] * (3 * 256 * 256))
        mean.write_bytes(blob.SerializeToString())
        test_net = Path(tmp) / "test.prototxt"
        text = (REPO / net.files.test_net).read_text()
        test_net.write_text(re.sub(r'mean_file: "[^"]*"', f'mean_file: "{mean}"', text))
        text, transform = deploy(test_net, batch, 3)
        (Path(tmp) / "deploy.prototxt").write_text(text)
        cnet = caffe.Net(str(Path(tmp) / "deploy.prototxt"), caffe.TEST)
    raw = np.random.default_rng(0).integers(0, 256, size=(batch, 3, 256, 256), dtype=np.uint8)
    times: dict[str, list[float]] = {"transform": [], "forward": [], "gram": []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        cnet.blobs["data"].data[...] = transform(raw)
        t1 = time.perf_counter()
        cnet.forward()
        t2 = time.perf_counter()
        for layer in LAYERS:
            gram(cnet.blobs[layer].data)
        t3 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[key].append(dt)
    feats = sum(int(np.prod(cnet.blobs[l].data.shape[1:])) for l in LAYERS)
    for key, v in times.items():
        print(f"| paper CaffeNet, batch {batch}: {key} | {1000 * min(v) / batch:.2f} ms an image (best of {repeat}) |")
    print(f"| features over conv1..fc8 an image | {feats:,} ({4 * feats / 2**20:.1f} MiB of float32) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plan", help="analyze this plan (its nets DONE), from a cold and a warm cache")
    ap.add_argument("--out", help="report directory for the plan part (default: a temporary one)")
    ap.add_argument("--paper-batch", type=int, help="time one batch of the paper's CaffeNet of this size")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads of the paper-batch part (as one analysis job)")
    a = ap.parse_args()
    console.setup()
    if a.plan:
        print("| run | wall | forward runs computed | Caffe forward (yardstick) | wall / forward | parts |")
        print("|---|---|---|---|---|---|")
        plan_run(a.plan, Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="bench-analysis-")))
    if a.paper_batch:
        import_caffe()
        set_blas_threads(a.threads)
        paper_batch(a.paper_batch, a.repeat)
    print(f"(settings: images {compute.DEFAULT_IMAGES} max per set, the plan's test batch)")


if __name__ == "__main__":
    main()
