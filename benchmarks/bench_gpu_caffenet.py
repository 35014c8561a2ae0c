"""`caffe time` of the paper's CaffeNet (prototxt/paper/base-all.train.prototxt) at batch 256.

The Data layer is replaced by DummyData of the same shape (256 x 3 x 227 x 227), so the figure is
Caffe's own forward+backward compute, without the LMDB reader. On a GPU it writes its figures, the
command and the machine into BENCHMARKS.md (section "GPU: CaffeNet forward+backward"):

    .venv/bin/python benchmarks/bench_gpu_caffenet.py --gpu 0 --write
    .venv/bin/python benchmarks/bench_gpu_caffenet.py --gpu 0 --precision tf32   # TF32 tensor cores
    .venv/bin/python benchmarks/bench_gpu_caffenet.py --cpu --batch 4 --iterations 1   # the code path, on CPU
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from google.protobuf import text_format

from transfer import REPO
from transfer.caffe import gpu, precision
from transfer.caffe.env import caffe_binary, caffe_pb2
from transfer.core.files import atomic_write
from transfer.caffe.precision import PRECISIONS, PrecisionSpec

NET = REPO / "prototxt" / "paper" / "base-all.train.prototxt"
SECTION = "## GPU: CaffeNet forward+backward (`caffe time`)"


def timing_net(batch: int) -> str:
    """The paper's CaffeNet with DummyData (batch x 3 x crop x crop, labels) in place of Data."""
    pb = caffe_pb2()
    net = pb.NetParameter()
    text_format.Merge(NET.read_text(), net)
    out = pb.NetParameter(name=net.name)
    for layer in net.layer:
        if layer.type == "Data":
            crop = layer.transform_param.crop_size or 227
            dummy = out.layer.add(name=layer.name, type="DummyData", top=list(layer.top))
            dummy.dummy_data_param.shape.add(dim=[batch, 3, crop, crop])
            dummy.dummy_data_param.shape.add(dim=[batch])
            dummy.dummy_data_param.data_filler.add(type="gaussian", std=50)
            dummy.dummy_data_param.data_filler.add(type="constant", value=0)
        elif layer.type == "Accuracy":
            continue   # a test-phase layer; `caffe time` runs the TRAIN phase
        else:
            out.layer.add().CopyFrom(layer)
    return text_format.MessageToString(out)


AVERAGES = re.compile(r"Average (Forward pass|Backward pass|Forward-Backward):\s*([0-9.]+)\s*ms")


def averages(out: str) -> dict[str, float]:
    """Forward, backward and forward+backward ms of a `caffe time` output."""
    return {k: float(v) for k, v in AVERAGES.findall(out)}


def caffe_time_outputs(model: Path, gpu_id: int | None, iterations: int, prec: PrecisionSpec = PrecisionSpec(),
                       copies: int = 1, binary: Path | None = None) -> list[str]:
    """The output of `copies` `caffe time` processes of `model` started together, each checked."""
    cmd = [str(binary or caffe_binary()), "time", f"-model={model}", f"-iterations={iterations}"]
    if gpu_id is not None:
        cmd.append(f"-gpu={gpu_id}")
    # as training sets it; INFO lines kept (an earlier pycaffe import in this process quiets glog)
    env = precision.caffe_environ(prec, {**os.environ, "GLOG_logtostderr": "1", "GLOG_minloglevel": "0"})

    def one(_: int) -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        out = proc.stderr + proc.stdout
        if proc.returncode != 0 or "Forward-Backward" not in averages(out):
            tail = "\n".join(out.strip().splitlines()[-15:])
            sys.exit(f"bench: `{' '.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
        return out

    with ThreadPoolExecutor(copies) as pool:
        return list(pool.map(one, range(copies)))


def caffe_time(model: Path, gpu_id: int | None, iterations: int,
               prec: PrecisionSpec = PrecisionSpec()) -> dict[str, float]:
    return averages(caffe_time_outputs(model, gpu_id, iterations, prec)[0])


def machine(gpu_id: int | None) -> str:
    """The GPU's name and driver (or where the figures were measured)."""
    if gpu_id is None:
        return "CPU"
    devices, _ = gpu.visible_gpus()
    dev = devices[gpu_id] if gpu_id < len(devices) else None
    return f"{dev.name}, driver {dev.driver}" if dev else f"GPU {gpu_id}"


def write_section(text: str, section: str = SECTION) -> None:
    """Replace (or append) the BENCHMARKS.md section that starts with the heading `section`."""
    path = REPO / "BENCHMARKS.md"
    doc = path.read_text()
    start = doc.find(section)
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(section))
        doc = doc[:start] + text + (doc[end + 1:] if end >= 0 else "")
    atomic_write(path, doc)


def device_args(ap: argparse.ArgumentParser) -> None:
    """--gpu K or --cpu, --batch, --iterations: what every CaffeNet timing takes."""
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--gpu", type=int, metavar="K")
    where.add_argument("--cpu", action="store_true")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=50)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    device_args(ap)
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32", help="GPU math (default fp32)")
    ap.add_argument("--deterministic", action="store_true", help="cuDNN deterministic algorithms only")
    ap.add_argument("--write", action="store_true", help="record the figures in BENCHMARKS.md (GPU only)")
    args = ap.parse_args()
    gpu_id = None if args.cpu else args.gpu
    with tempfile.TemporaryDirectory(prefix="bench-caffenet-") as tmp:
        model = Path(tmp) / "caffenet.prototxt"
        model.write_text(timing_net(args.batch))
        prec = precision.effective(PrecisionSpec(args.precision, args.deterministic), "CPU" if gpu_id is None else "GPU")
        t = caffe_time(model, gpu_id, args.iterations, prec)
    label = precision.label(prec.precision, "CPU" if gpu_id is None else "GPU") + (
        ", deterministic" if prec.deterministic else "")
    print(f"CaffeNet batch {args.batch}, {args.iterations} iterations on {'CPU' if gpu_id is None else f'GPU {gpu_id}'}, "
          f"{label}: "
          f"forward {t['Forward pass']:.1f} ms, backward {t['Backward pass']:.1f} ms, "
          f"forward+backward {t['Forward-Backward']:.1f} ms/iteration")
    if args.write:
        if gpu_id is None:
            sys.exit("bench_gpu_caffenet: --write records GPU figures only")
        write_section(
            f"{SECTION}\n\n"
            f"    .venv/bin/python benchmarks/bench_gpu_caffenet.py --gpu {gpu_id} --batch {args.batch} "
            f"--iterations {args.iterations} --precision {prec.precision}"
            f"{' --deterministic' if prec.deterministic else ''} --write\n\n"
            f"Measured {date.today().isoformat()} on {machine(gpu_id)}; build: {gpu.current_build().describe()}.\n"
            f"The paper's CaffeNet, batch {args.batch}, DummyData in place of the LMDB reader; precision {label}.\n\n"
            "| forward | backward | forward+backward |\n|---|---|---|\n"
            f"| {t['Forward pass']:.1f} ms | {t['Backward pass']:.1f} ms | **{t['Forward-Backward']:.1f} ms/iteration** |\n")
        print("written to BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
