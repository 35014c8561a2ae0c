"""How a training attempt computes: fp32 or TF32 on the GPU, deterministic cuDNN or not.

The choice reaches caffe as environment variables of its process:
- NVIDIA_TF32_OVERRIDE=0 (fp32): NVIDIA's switch that keeps cuDNN and cuBLAS off TF32 whatever a
  program asks for; it is removed for tf32 (a 0 inherited from the shell would veto it);
- CAFFE_TF32=1|0 and CAFFE_CUDNN_DETERMINISTIC=1|0: read by the patched Caffe (caffe/patches/0010-*, 0012-*),
  which sets the cuBLAS math mode and the cuDNN math type and algorithms accordingly.
The CPU computes in fp32 whatever is asked: a CPU attempt records "fp32".
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..core.errors import TransferError

# How a GPU computes fp32 math: "fp32" IEEE single precision throughout (the paper's GPUs had nothing
# else), "tf32" lets cuDNN and cuBLAS use TF32 tensor cores (10-bit mantissa products, faster).
PRECISIONS = ("fp32", "tf32")


@dataclass(frozen=True)
class PrecisionSpec:
    """How the GPU computes (a plan's `precision` and `deterministic`; the command line may override)."""

    precision: str = "fp32"         # one of PRECISIONS
    deterministic: bool = False     # cuDNN deterministic algorithms only: bit-identical reruns

TF32_OFF = "NVIDIA_TF32_OVERRIDE"
CAFFE_TF32 = "CAFFE_TF32"
CAFFE_DETERMINISTIC = "CAFFE_CUDNN_DETERMINISTIC"


def check(value: str, what: str = "--precision") -> str:
    if value not in PRECISIONS:
        raise TransferError(f"{what}: {value!r} is not a precision (one of {', '.join(PRECISIONS)})")
    return value


def choose(plan_spec: PrecisionSpec, precision: str | None = None,
           deterministic: bool | None = None) -> PrecisionSpec:
    """The plan's choice with the command line's overrides (None: the plan's)."""
    return PrecisionSpec(precision=check(precision) if precision is not None else plan_spec.precision,
                         deterministic=plan_spec.deterministic if deterministic is None else deterministic)


def effective(spec: PrecisionSpec, mode: str) -> PrecisionSpec:
    """What an attempt in `mode` (CPU | GPU) really computes with: the CPU has no TF32."""
    return PrecisionSpec("fp32", spec.deterministic) if mode == "CPU" else spec


def caffe_environ(spec: PrecisionSpec, base: dict[str, str]) -> dict[str, str]:
    """`base` (an environment) with the variables that make caffe compute as `spec` says."""
    env = dict(base)
    if spec.precision == "tf32":
        env.pop(TF32_OFF, None)
    else:
        env[TF32_OFF] = "0"
    env[CAFFE_TF32] = "1" if spec.precision == "tf32" else "0"
    env[CAFFE_DETERMINISTIC] = "1" if spec.deterministic else "0"
    return env


def record(spec: PrecisionSpec) -> dict:
    """The fields an attempt keeps in attempts.jsonl."""
    return {"precision": spec.precision, "deterministic": spec.deterministic}


def label(precision: str | None, mode: str | None) -> str:
    """How a report names an attempt's precision: "fp32", "tf32", "fp32 (CPU)"; "unrecorded" for a
    GPU attempt recorded before the choice was (cuDNN's default then allowed TF32 on Ampere and newer)."""
    if mode == "CPU":
        return "fp32 (CPU)"
    return precision or "unrecorded"


def summarize(attempts: dict[str, list[dict]]) -> dict:
    """Per net, the precisions its attempts used (attempts.jsonl records), and one label for them all:
    "fp32 (CPU)", "tf32", or "mixed: fp32, tf32" when nets (or attempts of a net) differ."""
    per_net = {name: sorted({label(a.get("precision"), a.get("mode")) for a in recs})
               for name, recs in attempts.items() if recs}
    every = sorted({x for labels in per_net.values() for x in labels})
    dets = {bool(a.get("deterministic")) for recs in attempts.values() for a in recs}
    text = ("unknown (no attempt recorded)" if not every else every[0] if len(every) == 1
            else "mixed: " + ", ".join(every))
    return {"label": text, "deterministic": dets == {True} if dets else None, "per_net": per_net}


def add_options(p: argparse.ArgumentParser) -> None:
    """--precision and --deterministic/--no-deterministic (default: the plan's `precision`, `deterministic`)."""
    p.add_argument("--precision", type=_precision_arg, metavar="{" + ",".join(PRECISIONS) + "}",
                   help="GPU math: fp32 (faithful: no TF32 in cuDNN or cuBLAS) or tf32 (TF32 tensor cores, "
                        "faster); default: the plan's `precision` (fp32)")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                   help="cuDNN deterministic algorithms only (bit-identical reruns, may be slower); "
                        "default: the plan's `deterministic` (false)")


def _precision_arg(value: str) -> str:
    if value not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a precision (one of {', '.join(PRECISIONS)})")
    return value
