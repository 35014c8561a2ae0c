"""CaffeNet at batch 256 on one GPU, in one run: Caffe (cuDNN fp32, cuDNN tf32, no cuDNN) beside a PyTorch
CaffeNet (fp32, TF32), then the GPU's throughput with 1, 2 and 3 Caffe nets at once, and the pooling and
LRN layers with cuDNN and with Caffe's own kernels.

    .venv/bin/python benchmarks/bench_gpu.py --gpu 0 [--caffe-root nocudnn=DIR] [--write] [--figures-out F]
    .venv/bin/python benchmarks/bench_gpu.py --cpu --batch 2 --iterations 1 --nets 1,2   # the code path, on CPU

Caffe: `caffe time` of the paper's CaffeNet with DummyData in place of the Data layer (its compute only;
benchmarks/bench_data_layer.py measures the input side), for the recorded build (`make caffe`) and for
each `--caffe-root NAME=DIR` (e.g. a build without cuDNN, `CAFFE_GPU=1 CAFFE_CUDNN=0 make caffe`).
Then `caffe train` of the same CaffeNet from an LMDB of 3x256x256 Datums (crop 227, mirror, mean file):
ms per iteration with the Data layer in the loop, and in how many batches the forward pass waited for
the prefetch thread (the project's Caffe logs that every 100 batches; the first batch is not counted).
Its learning rate is the paper's 0.01 at batch 256, scaled with the batch (a CPU smoke run at batch 2
diverged at 0.01), and a loss that is not finite fails the benchmark: it diverges only on purpose.
Precision goes to caffe through the environment, as `transfer train` sets it (transfer/caffe/precision.py).
PyTorch is only the yardstick: the same layers, SGD with momentum, synthetic tensors on the GPU; it is
skipped where torch does not import. Several nets at once: K `caffe time` processes on the same GPU, started together;
throughput = K x batch / the slowest one's ms per iteration. `--figures-out FILE` writes these figures
in the form `transfer plan simulate --figures FILE` reads (transfer/speeds/h100.yaml).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data_layer import imagenet_sized  # noqa: E402
from bench_gpu_caffenet import (NET, averages, caffe_time_outputs, device_args, machine, timing_net,  # noqa: E402
                                write_section)

from google.protobuf import text_format  # noqa: E402

import yaml  # noqa: E402

from transfer.caffe import gpu, logs
from transfer.plan import speed  # noqa: E402
from transfer.caffe import precision as precision_  # noqa: E402
from transfer.caffe.precision import PrecisionSpec  # noqa: E402
from transfer.caffe.env import caffe_binary, caffe_pb2  # noqa: E402
from transfer.core.files import atomic_write  # noqa: E402

SECTION = "## GPU: Caffe against PyTorch, and nets per GPU (`bench_gpu.py`)"


PER_LAYER = re.compile(r"^.*?\b(\S+)\t(forward|backward): ([0-9.e+-]+) ms\.", re.M)


def caffe_ms(binary: Path, model: Path, gpu_id: int | None, iterations: int, precision: str = "fp32",
             copies: int = 1) -> list[float]:
    """ms per forward+backward of `copies` `caffe time` processes started together."""
    return [averages(out)["Forward-Backward"]
            for out in caffe_time_outputs(model, gpu_id, iterations, PrecisionSpec(precision), copies, binary)]


def layer_ms(out: str) -> dict[str, float]:
    """Forward + backward ms of each layer in a `caffe time` output."""
    got: dict[str, float] = {}
    for name, _, ms in PER_LAYER.findall(out):
        got[name] = got.get(name, 0.0) + float(ms)
    return got


def with_engine(net, engine: str) -> str:
    """A copy of the timing net (a NetParameter) with `engine` (CAFFE or CUDNN) set on its Pooling and
    LRN layers, as text."""
    pb = caffe_pb2()
    out = pb.NetParameter()
    out.CopyFrom(net)
    for layer in out.layer:
        if layer.type == "Pooling":
            layer.pooling_param.engine = getattr(pb.PoolingParameter, engine)
        elif layer.type == "LRN":
            layer.lrn_param.engine = getattr(pb.LRNParameter, engine)
    return text_format.MessageToString(out)


def engine_rows(model: Path, gpu_id: int | None, iterations: int, default_out: str) -> list[str]:
    """Pooling and LRN layers timed with Caffe's default engine (cuDNN in a cuDNN build; `default_out`,
    the fp32 `caffe time` of `model`) and with Caffe's own kernels (engine: CAFFE), in the same run:
    which is faster, layer by layer."""
    net = text_format.Merge(model.read_text(), caffe_pb2().NetParameter())
    own = model.with_name("caffenet-engine-caffe.prototxt")
    own.write_text(with_engine(net, "CAFFE"))
    default = layer_ms(default_out)
    caffe = layer_ms(caffe_time_outputs(own, gpu_id, iterations)[0])
    rows = []
    for layer in net.layer:
        name = layer.name
        if layer.type in ("Pooling", "LRN") and name in default and name in caffe:
            faster = "default" if default[name] < caffe[name] else "CAFFE"
            rows.append(f"| {name} ({layer.type}) | {default[name]:.2f} | {caffe[name]:.2f} | {faster} |")
    return rows


WAITED = re.compile(r": waited for data in (\d+) of the last 100 batches, ([0-9.e+]+) ms")


def train_with_data(work: Path, gpu_id: int | None, batch: int, iterations: int,
                    images: int) -> tuple[float, int, float]:
    """(ms per iteration, batches that waited for data, ms waited) of `caffe train` of the paper's CaffeNet reading
    an LMDB of `images` synthetic 3x256x256 Datums (from the page cache after the first pass)."""
    db, mean = imagenet_sized(work, images)
    pb = caffe_pb2()
    net = pb.NetParameter()
    text_format.Merge(NET.read_text(), net)
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.source, layer.data_param.batch_size = str(db), batch
            layer.transform_param.mean_file = str(mean)
    net_file, solver_file, log_file = work / "train.prototxt", work / "solver.prototxt", work / "train.log"
    net_file.write_text(text_format.MessageToString(net))
    # The paper's rate at its batch of 256, scaled with the batch: at 0.01 a batch of 2 (the CPU smoke run)
    # reaches a loss of NaN within 200 iterations, and a net computing NaN times nothing worth recording.
    solver = pb.SolverParameter(net=str(net_file), base_lr=0.01 * min(1.0, batch / 256), lr_policy="fixed",
                                momentum=0.9,
                                weight_decay=0.0005, display=max(1, iterations // 10), max_iter=iterations,
                                snapshot_after_train=False,
                                solver_mode=pb.SolverParameter.CPU if gpu_id is None else pb.SolverParameter.GPU)
    solver_file.write_text(text_format.MessageToString(solver))
    cmd = [str(caffe_binary()), "train", f"-solver={solver_file}"] + ([] if gpu_id is None else [f"-gpu={gpu_id}"])
    with open(log_file, "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env=precision_.caffe_environ(PrecisionSpec("fp32"),
                                                        {**os.environ, "GLOG_logtostderr": "1",
                                                         "GLOG_minloglevel": "0"})).returncode
    text = log_file.read_text(errors="replace")
    speed = logs.read_logs([log_file], strict=False).speed()
    diverged = logs.first_divergence(log_file)
    if diverged is not None:   # (whether caffe then crashed on it or not)
        sys.exit(f"bench_gpu: `{' '.join(cmd)}` diverged: {diverged}; the speed of a net computing NaN is no "
                 "measurement")
    if rc or not speed:
        tail = "\n".join(text.strip().splitlines()[-12:])
        sys.exit(f"bench_gpu: `{' '.join(cmd)}` failed (exit {rc}):\n{tail}")
    waits = [(int(n), float(ms)) for n, ms in WAITED.findall(text)]
    return 1000 / speed, sum(n for n, _ in waits), sum(ms for _, ms in waits)


def torch_ms(batch: int, iterations: int, gpu_id: int | None, tf32: bool) -> float | None:
    """ms per SGD iteration of a PyTorch CaffeNet; None where torch does not import."""
    try:
        import torch  # noqa: PLC0415
        from torch import nn  # noqa: PLC0415
    except ImportError:
        return None
    dev = torch.device("cpu" if gpu_id is None else f"cuda:{gpu_id}")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)
    net = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(True), nn.MaxPool2d(3, 2, ceil_mode=True), lrn,
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(True), nn.MaxPool2d(3, 2, ceil_mode=True), lrn,
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(True),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(True), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Flatten(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(True), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000)).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 227, 227, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(iterations):
        step()
    sync()
    return (time.perf_counter() - t0) / iterations * 1000


def write_figures(path: Path, machine: str, command: str, alone_ms: float, alone_how: str,
                  packed: list[tuple[int, float, float]]) -> None:
    """The simulator's figures file; multi-GPU stays the committed assumption (one GPU measures none)."""
    one = next(ips for k, _, ips in packed if k == 1)
    committed = speed.load_figures()
    doc = {"gpu": machine, "alone_ms_per_iter": round(alone_ms, 2),
           "source": f"{command} on {machine}, {date.today().isoformat()}: {alone_how}",
           "packing": {"throughput": {k: round(ips / one, 3) for k, _, ips in packed},
                       "source": f"{command}: K `caffe time` processes at once on the GPU"},
           "multi_gpu": {"efficiency": dict(committed.efficiency), "measured": committed.multi_gpu_measured,
                         "source": committed.sources["multi_gpu"]}}
    atomic_write(path, "# Written by benchmarks/bench_gpu.py (schema: transfer/speeds/h100.yaml)\n"
                 + yaml.safe_dump(doc, sort_keys=False))
    speed.load_figures(path)   # what the simulator will read back


def write_summary(path: Path, where: str, batch: int, outputs: dict[str, str],
                  trained: tuple[float, int, float] | None) -> None:
    """ms/iteration by precision and `caffe train`'s data waits, as JSON (the table of `make test-gpu`)."""
    path.write_text(json.dumps({
        "where": where, "batch": batch,
        "ms": {p: averages(out)["Forward-Backward"] for p, out in outputs.items()},
        "train": {"ms": trained[0], "waited_batches": trained[1], "waited_ms": trained[2]} if trained else None}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    device_args(ap)
    ap.add_argument("--nets", default="1,2,3", help="nets at once on the GPU, e.g. 1,2,3")
    ap.add_argument("--train-iterations", type=int, default=200, help="caffe train from an LMDB (0: skip)")
    ap.add_argument("--images", type=int, default=2048, help="Datums in that LMDB")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "transfer-bench-gpu")
    ap.add_argument("--caffe-root", action="append", default=[], metavar="NAME=DIR",
                    help="another Caffe build to time in fp32 (e.g. nocudnn=DIR)")
    ap.add_argument("--write", action="store_true", help="record the figures in BENCHMARKS.md (GPU only)")
    ap.add_argument("--figures-out", type=Path, help="write the figures for `transfer plan simulate --figures`")
    ap.add_argument("--summary-out", type=Path, help="write ms/iteration by precision and the data waits as JSON "
                    "(the table at the end of `make test-gpu`)")
    a = ap.parse_args()
    if a.figures_out and "1" not in a.nets.split(","):
        sys.exit("bench_gpu: --figures-out needs one net alone in --nets (e.g. --nets 1,2,3)")
    gpu_id = None if a.cpu else a.gpu
    nets = [int(k) for k in a.nets.split(",")]
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        model = Path(tmp) / "caffenet.prototxt"
        model.write_text(timing_net(a.batch))
        build = gpu.current_build()
        outputs = {}   # the recorded build alone, by precision: the fp32 one also serves K=1 and the engines
        for precision in ("fp32", "tf32") if build.gpu and gpu_id is not None else ("fp32",):
            outputs[precision] = caffe_time_outputs(model, gpu_id, a.iterations, PrecisionSpec(precision))[0]
            rows.append((f"Caffe, {build.describe()}, {precision}", averages(outputs[precision])["Forward-Backward"]))
        for spec in a.caffe_root:
            name, _, root = spec.partition("=")
            if not root or not (Path(root) / "build/tools/caffe").is_file():
                sys.exit(f"bench_gpu: --caffe-root {spec!r}: expected NAME=DIR with DIR/build/tools/caffe")
            rows.append((f"Caffe, {name}, fp32", caffe_ms(Path(root) / "build/tools/caffe", model, gpu_id,
                                                           a.iterations)[0]))
        for tf32 in (False, True):
            ms = torch_ms(a.batch, a.iterations, gpu_id, tf32)
            label = f"PyTorch CaffeNet, {'TF32' if tf32 else 'fp32'}"
            if ms is None:
                print(f"{label}: skipped (torch does not import here)")
            else:
                rows.append((label, ms))
        packed = []
        for k in nets:
            ms = [rows[0][1]] if k == 1 else caffe_ms(caffe_binary(), model, gpu_id, a.iterations, "fp32", copies=k)
            packed.append((k, max(ms), k * a.batch / max(ms) * 1000))
        engines = engine_rows(model, gpu_id, a.iterations, outputs["fp32"])
    trained = train_with_data(a.work, gpu_id, a.batch, a.train_iterations, a.images) if a.train_iterations else None
    where_txt = "CPU" if gpu_id is None else f"GPU {gpu_id}"
    table = [f"| {name} | {ms:.1f} | {a.batch / ms * 1000:,.0f} |" for name, ms in rows]
    torch_fp32 = next((ms for name, ms in rows if name == "PyTorch CaffeNet, fp32"), None)
    ratio = f"Caffe fp32 / PyTorch fp32: **{rows[0][1] / torch_fp32:.2f}**" if torch_fp32 else \
        "Caffe fp32 / PyTorch fp32: (no PyTorch)"
    one = packed[0][2] if packed and packed[0][0] == 1 else None
    pack_table = [f"| {k} | {ms:.1f} | {ips:,.0f} |" + (f" {ips / one:.2f} |" if one else " |")
                  for k, ms, ips in packed]
    text = (f"CaffeNet batch {a.batch}, {a.iterations} iterations on {where_txt}\n\n"
            "| what | ms/iteration | images/s |\n|---|---|---|\n" + "\n".join(table) + f"\n\n{ratio}\n\n"
            "| nets at once | ms/iteration (slowest) | images/s, all nets | x one net |\n|---|---|---|---|\n"
            + "\n".join(pack_table) + "\n")
    # This Caffe's layer factory keeps MAX pooling on its own kernels even with cuDNN (cuDNN's backward
    # recomputes the argmax from the top, which an in-place layer after it would have changed).
    default_engine = ("cuDNN for LRN; max pooling stays Caffe's own, as its layer factory decides"
                      if build.cudnn and gpu_id is not None else "Caffe's own: no cuDNN here")
    text += (f"\nPooling and LRN, fp32, ms forward + backward a layer: the default engine ({default_engine}) "
             "against Caffe's own kernels (`engine: CAFFE`)\n\n"
             "| layer | default engine | engine: CAFFE | faster |\n|---|---|---|---|\n" + "\n".join(engines) + "\n")
    if trained:
        text += (f"\n`caffe train` from an LMDB ({a.images} Datums, crop 227, mirror, mean; {a.train_iterations} "
                 f"iterations): **{trained[0]:.1f} ms/iteration** ({a.batch / trained[0] * 1000:,.0f} images/s); "
                 f"waited for data in {trained[1]} batches ({trained[2]:.0f} ms in all)\n")
    print(text)
    command = " ".join(["benchmarks/bench_gpu.py", *sys.argv[1:]])
    where = machine(gpu_id)
    if a.figures_out:
        alone, how = (trained[0], f"caffe train from an LMDB, batch {a.batch}, fp32") if trained else \
            (packed[0][1], "caffe time (DummyData), fp32")
        write_figures(a.figures_out, where, command, alone, how, packed)
        print(f"figures for `transfer plan simulate --figures {a.figures_out}` written")
    if a.summary_out:
        write_summary(a.summary_out, where, a.batch, outputs, trained)
    if a.write:
        if gpu_id is None:
            sys.exit("bench_gpu: --write records GPU figures only")
        write_section(f"{SECTION}\n\n    .venv/bin/python {command}\n\n"
                      f"Measured {date.today().isoformat()} on {where}.\n\n{text}", SECTION)
        print("written to BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
