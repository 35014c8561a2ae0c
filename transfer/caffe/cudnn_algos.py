"""The cuDNN convolution algorithms a caffe run chose, read from its log (for attempts.jsonl).

The project's cuDNN convolution (caffe/cudnn_conv_layer.cpp) logs its choice once per layer, phase
and input shape, as one line of space-separated key=value fields after the word cudnn_conv_algos:

    cudnn_conv_algos layer=conv1 phase=TRAIN input=256x3x227x227 group=1 precision=fp32
      deterministic=0 bound_mib=512 fallback=none fwd_algo=1 fwd_math=fma fwd_ws=0 fwd_by=find
      bwd_filter_algo=1 bwd_filter_math=fma bwd_filter_ws=1048576 bwd_filter_by=find
      bwd_data_algo=0 bwd_data_math=fma bwd_data_ws=0 bwd_data_by=find          (one line)

Each line becomes a dict of its fields. The earlier free-text form of that line is read too:

    cuDNN convolution conv1 input 256x3x227x227 group 1 (fp32, measured, workspace bound 512 MiB):
      forward algo 1 (0.5 ms, 0 MiB, math 3); backward filter algo 1 (...); backward data algo 0 (...)
"""
from __future__ import annotations

import re
from pathlib import Path

KEYED = re.compile(r"cudnn_conv_algos((?: \S+=\S*)+)")
# The earlier form: the layer, input, group, precision, how ranked, then each direction's algorithm.
FREE = re.compile(r"cuDNN convolution (\S+) input (\S+) group (\d+) \((fp32|tf32), ([^,]+(?:: [^,]+)?), "
                  r"workspace bound (\d+) MiB\): forward (.*?); backward filter (.*?); backward data (.*)$")
DIRECTION = re.compile(r"algo (\d+) \((?:[0-9.e+-]+ ms, )?(\d+) MiB, math (\d+)")


def _free_form(m: re.Match) -> dict[str, str]:
    layer, shape, group, precision, how, bound, *directions = m.groups()
    out = {"layer": layer, "input": shape, "group": group, "precision": precision,
           "deterministic": "1" if how.startswith("deterministic") else "0", "bound_mib": bound,
           "fallback": "none"}
    for name, text in zip(("fwd", "bwd_filter", "bwd_data"), directions):
        d = DIRECTION.search(text)
        if d is None:   # "none fits: fallback"
            out.update({f"{name}_algo": "fallback", f"{name}_by": "none"})
            out["fallback"] = "none_fits"
        else:
            out.update({f"{name}_algo": d.group(1), f"{name}_math": d.group(3),
                        f"{name}_by": "heuristic" if out["deterministic"] == "1" else "find"})
    return out


def choices(text: str) -> list[dict[str, str]]:
    """Every choice the log records, in order (a resumed or repeated shape appears again)."""
    found = []
    for line in text.splitlines():
        m = KEYED.search(line)
        if m:
            found.append(dict(f.split("=", 1) for f in m.group(1).split()))
            continue
        m = FREE.search(line)
        if m:
            found.append(_free_form(m))
    return found


def record(log_path: Path) -> dict[str, list[dict[str, str]]]:
    """{"cudnn_algos": [...]} for an attempt whose log has such lines; {} otherwise (no cuDNN, the CPU)."""
    try:
        found = choices(log_path.read_text(errors="replace"))
    except OSError:
        return {}
    return {"cudnn_algos": found} if found else {}
