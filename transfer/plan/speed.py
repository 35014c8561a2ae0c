"""GPU speed figures for the makespan simulator: one net alone, K nets sharing a GPU, one net on G GPUs.

The numbers live in a small YAML file (schema in transfer/speeds/h100.yaml, the committed default),
each block with a `source:` line; a GPU benchmark writes the same form, given with `--figures FILE`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import TransferError
from ..core.yamlfile import load_yaml
from .spec import Block

DEFAULT_FIGURES = Path(__file__).resolve().parent.parent / "speeds" / "h100.yaml"


@dataclass(frozen=True)
class Figures:
    gpu: str
    alone_sec_per_iter: float
    throughput: dict[int, float]          # K nets at once -> aggregate, in units of one net alone
    efficiency: dict[int, float]          # G GPUs for one net -> speed-up G * e
    multi_gpu_measured: bool
    sources: dict[str, str]
    path: Path

    def slowdown(self, k: int) -> float:
        """How many times longer one net takes while k nets share its GPU."""
        return k / self.throughput[k]

    def speedup(self, g: int) -> float:
        """How many times faster one net trains on g GPUs than on one."""
        if g == 1:
            return 1.0
        if g not in self.efficiency:
            raise TransferError(f"{self.path}: multi_gpu.efficiency has no figure for {g} GPUs "
                                f"(it has {', '.join(map(str, sorted(self.efficiency))) or 'none'})")
        return g * self.efficiency[g]



def _counts(blk: Block, key: str, lo: float, hi: float | None) -> dict[int, float]:
    raw = blk.raw(key)
    if not isinstance(raw, dict) or not raw:
        raise blk.fail(key, f"expected a mapping of counts to numbers, e.g. {{2: 1.19}}, got {raw!r}")
    out: dict[int, float] = {}
    for k, v in raw.items():
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise blk.fail(f"{key}.{k}", f"{k!r} is not a positive count")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= lo or (hi is not None and v > hi):
            rng = f"> {lo}" + (f" and <= {hi}" if hi is not None else "")
            raise blk.fail(f"{key}.{k}", f"{v!r} is out of range (must be a number {rng})")
        out[k] = float(v)
    return out


def load_figures(path: str | Path | None = None) -> Figures:
    """The figures file at `path` (default: the committed H100 one), checked key by key."""
    path = Path(path) if path else DEFAULT_FIGURES
    try:
        data: Any = load_yaml(path)
    except OSError as exc:
        raise TransferError(f"--figures {path}: cannot read it ({exc.strerror or exc})") from None
    top = Block(path, "", data)
    top.check_keys(("gpu", "alone_ms_per_iter", "source", "packing", "multi_gpu"))
    pack = top.block("packing")
    pack.check_keys(("throughput", "saturated_ms_per_iter", "source"))
    multi = top.block("multi_gpu")
    multi.check_keys(("efficiency", "measured", "source"))
    sources = {}
    for blk, where in ((top, "alone"), (pack, "packing"), (multi, "multi_gpu")):
        src = blk.raw("source")
        if not isinstance(src, str) or not src.strip():
            raise blk.fail("source", f"say where the numbers come from (a benchmark, or 'assumption: ...'), "
                                     f"got {src!r}")
        sources[where] = src
    throughput = {1: 1.0, **_counts(pack, "throughput", 0.0, None)}
    if throughput[1] != 1.0:
        raise pack.fail("throughput.1", f"{throughput[1]} must be 1.0 (one net alone is the unit)")
    missing = [k for k in range(1, max(throughput)) if k not in throughput]
    if missing:
        raise pack.fail("throughput", f"no figure for {missing[0]} nets at once (give every K up to "
                                      f"{max(throughput)})")
    measured = multi.raw("measured")
    if not isinstance(measured, bool):
        raise multi.fail("measured", f"expected true or false, got {measured!r}")
    gpu = top.raw("gpu")
    if not isinstance(gpu, str) or not gpu.strip():
        raise top.fail("gpu", f"expected the GPU model's name, got {gpu!r}")
    return Figures(gpu=gpu, alone_sec_per_iter=top.number("alone_ms_per_iter", positive=True) / 1000.0,
                   throughput=throughput, efficiency=_counts(multi, "efficiency", 0.0, 1.0),
                   multi_gpu_measured=measured, sources=sources, path=path)
