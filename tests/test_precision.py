"""Precision (fp32 | tf32) and determinism: read from the plan or the command line, handed to the caffe
process as environment variables, recorded per attempt and shown in the report; and the Caffe patch
that reads those variables (checked on the real sdist's sources; compiling it is `make check-gpu-build`)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from transfer import REPO
from transfer.caffe import precision
from transfer.core.errors import TransferError
from transfer.plan.load import load_plan
from transfer.train.jobscript import JobOptions, job_script
from transfer.train.options import RunOptions
from transfer.caffe.precision import PrecisionSpec

import tinyrun  # noqa: E402



def _plan_with(tmp_path: Path, **top) -> Path:
    config = yaml.safe_load(tinyrun.TINY.read_text())
    config.update(top)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ---------------------------------------------------------------------------- the choice

@pytest.mark.parametrize("name", ["paper", "small", "tiny", "huh2016", "huh-small"])
def test_every_shipped_plan_is_fp32_and_says_so(name):
    assert load_plan(name).precision == PrecisionSpec("fp32", False)
    text = (REPO / "transfer" / "plans" / f"{name}.yaml").read_text()
    assert "\nprecision: fp32" in text and "\ndeterministic: false" in text


def test_plan_values_are_read_and_bad_ones_named(tmp_path):
    assert load_plan(str(_plan_with(tmp_path, precision="tf32", deterministic=True))).precision == \
        PrecisionSpec("tf32", True)
    with pytest.raises(TransferError, match=r"plan\.yaml: precision: 'fp16' is not one of fp32, tf32"):
        load_plan(str(_plan_with(tmp_path, precision="fp16")))
    with pytest.raises(TransferError, match=r"plan\.yaml: deterministic: expected true or false, got 'yes'"):
        load_plan(str(_plan_with(tmp_path, deterministic="yes")))


@pytest.mark.parametrize("cmd", [["train", "base-half0A"], ["run"], ["submit", "--dry-run"]])
def test_bad_precision_option_is_refused_naming_option_and_value(cmd):
    res = tinyrun.run_cli(*cmd, "--plan", "tiny", "--precision", "bf16", timeout=60)
    assert res.returncode == 2
    assert "argument --precision: 'bf16' is not a precision (one of fp32, tf32)" in res.stderr


def test_command_line_overrides_the_plan():
    plan = PrecisionSpec("fp32", False)
    assert precision.choose(plan) == plan
    assert precision.choose(plan, "tf32", True) == PrecisionSpec("tf32", True)
    assert precision.choose(PrecisionSpec("tf32", True), None, False) == PrecisionSpec("tf32", False)
    assert precision.effective(PrecisionSpec("tf32", True), "CPU") == PrecisionSpec("fp32", True)
    tiny = load_plan("tiny")
    assert RunOptions.of(tiny).train_args() == ["--precision", "fp32", "--no-deterministic"]   # the plan's
    assert RunOptions.of(tiny, precision="tf32", deterministic=False).train_args() == \
        ["--precision", "tf32", "--no-deterministic"]


def test_environment_of_each_choice():
    inherited = {"NVIDIA_TF32_OVERRIDE": "0", "PATH": "/bin"}
    fp32 = precision.caffe_environ(PrecisionSpec("fp32", False), {"PATH": "/bin"})
    assert fp32 == {"PATH": "/bin", "NVIDIA_TF32_OVERRIDE": "0", "CAFFE_TF32": "0", "CAFFE_CUDNN_DETERMINISTIC": "0"}
    tf32 = precision.caffe_environ(PrecisionSpec("tf32", True), inherited)
    # an inherited NVIDIA_TF32_OVERRIDE=0 would veto TF32: it is removed
    assert tf32 == {"PATH": "/bin", "CAFFE_TF32": "1", "CAFFE_CUDNN_DETERMINISTIC": "1"}
    assert inherited["NVIDIA_TF32_OVERRIDE"] == "0"   # the caller's environment is left alone


def test_job_script_passes_the_override_on(tmp_path):
    from transfer.plan.rundir import RunDir
    run = RunDir(tmp_path / "runs" / "n", "n", 10)
    paper = load_plan("paper")
    opts = JobOptions(plan_arg="paper", run=RunOptions.of(paper, precision="tf32", deterministic=True))
    text = job_script("paper", "n", "transfer-paper-n", run, opts, tmp_path)
    assert 'train "$NET" --plan "$PLAN" --gpu 0 --precision tf32 --deterministic &' in text
    # no option: the plan's choice, resolved when the job is written (a follow-up trains the same way)
    plain = job_script("paper", "n", "transfer-paper-n", run, JobOptions(plan_arg="paper", run=RunOptions.of(paper)),
                       tmp_path)
    assert 'train "$NET" --plan "$PLAN" --gpu 0 --precision fp32 --no-deterministic &' in plain


def test_gpu_scripts_refuse_a_bad_deterministic_value():
    for script in ("train-net.sh", "run-plan.sh"):
        res = subprocess.run([str(REPO / "scripts" / script), "x", "tiny", "0"], capture_output=True, text=True,
                             env={**os.environ, "DETERMINISTIC": "yes", "GPUS": "0", "TRANSFER": "/bin/false"},
                             timeout=30)
        assert res.returncode == 2, (script, res.stderr)
        assert f"{script}: error: DETERMINISTIC='yes' must be 0 or 1" in res.stderr


def test_report_labels():
    attempts = {"a": [{"mode": "CPU", "precision": "fp32"}], "b": [{"mode": "CPU"}], "c": []}
    assert precision.summarize(attempts) == {"label": "fp32 (CPU)", "deterministic": False,
                                             "per_net": {"a": ["fp32 (CPU)"], "b": ["fp32 (CPU)"]}}
    mixed = precision.summarize({"a": [{"mode": "GPU", "precision": "tf32", "deterministic": True}],
                                 "b": [{"mode": "GPU"}, {"mode": "GPU", "precision": "fp32"}]})
    assert mixed["label"] == "mixed: fp32, tf32, unrecorded" and mixed["deterministic"] is False
    assert mixed["per_net"]["b"] == ["fp32", "unrecorded"]
    assert precision.summarize({"a": []})["label"] == "unknown (no attempt recorded)"


# ---------------------------------------------------------------------------- a real CPU attempt

@pytest.mark.requires_caffe
def test_cpu_attempt_gets_the_environment_records_it_and_the_report_shows_it(tmp_path, tmp_path_factory):
    plan = tinyrun.write_plan_copy(tmp_path, tinyrun.shared_data(tmp_path_factory),
                                   solver={"max_iter": 40, "snapshot": 40, "test_interval": 20})
    net = plan.net("base-half0A")
    proc = subprocess.Popen(tinyrun.transfer_cmd("train", net.name, "--plan", str(plan.path), "--cpu",
                                                 "--precision", "tf32", "--deterministic"),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "NVIDIA_TF32_OVERRIDE": "1"})
    environ = None
    deadline = time.time() + 120
    while environ is None and proc.poll() is None and time.time() < deadline:
        for child in tinyrun.children_of(proc.pid):   # the caffe process itself, while it trains
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                if len(cmdline) > 1 and cmdline[1] == b"train":
                    environ = dict(kv.split("=", 1) for kv in
                                   Path(f"/proc/{child}/environ").read_bytes().decode().split("\0") if "=" in kv)
            except OSError:
                pass
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert environ is not None, "caffe was not seen running"
    # the CPU has no TF32: the attempt computes, and says it computes, in fp32
    assert (environ["NVIDIA_TF32_OVERRIDE"], environ["CAFFE_TF32"], environ["CAFFE_CUDNN_DETERMINISTIC"]) == \
        ("0", "0", "1")
    assert "precision tf32 applies to GPUs only: the CPU computes in fp32" in out
    assert "fp32 (CPU), deterministic" in out
    (attempt,) = net.run.attempts()
    assert (attempt["mode"], attempt["precision"], attempt["deterministic"]) == ("CPU", "fp32", True)
    # a deterministic run seeds caffe's RNG (dropout, crops) with a fixed number, the net's
    assert re.search(r"^random_seed: \d+$", net.run.net_copy("solver").read_text(), re.M)
    header = net.run.attempt_log(1).read_text().splitlines()[0]
    assert "NVIDIA_TF32_OVERRIDE=0 CAFFE_TF32=0 CAFFE_CUDNN_DETERMINISTIC=1 " in header

    res = tinyrun.run_cli("report", "--plan", str(plan.path), "--out", str(tmp_path / "report"), "--no-figures")
    assert res.returncode == 3 and "incomplete: 7 of 8 nets not DONE" in res.stderr, res.stderr  # one net trained
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["precision"]["label"] == "fp32 (CPU)" and report["precision"]["deterministic"] is True
    assert report["precision"]["per_net"] == {net.name: ["fp32 (CPU)"]}
    md = (tmp_path / "report" / "report.md").read_text()
    assert md.count("*Precision: fp32 (CPU), cuDNN deterministic.*") >= 3   # the head, Figure 2, Table 1
    for heading in ("## Figure 2", "## Table 1"):   # right under each heading
        assert re.search(heading + r"[^\n]*\n\n\*Precision: fp32 \(CPU\)", md), heading
    assert f"| {net.name} |" in md and md.split(f"| {net.name} |", 1)[1].split("\n", 1)[0].rstrip().endswith(
        "| fp32 (CPU) |")


# ---------------------------------------------------------------------------- the Caffe patch

@pytest.mark.slow   # child processes (builds, kills, several commands): the full tier
def test_caffe_patches_read_the_variables(tmp_path):
    _, tree, records = tinyrun.patched_sdist(tmp_path)
    files = {r["name"].split("-", 1)[1]: set(r["files"]) for r in records
             if "cublas" in r["name"] or "cudnn" in r["name"]}
    assert files == {
        "cublas-math-from-caffe-tf32.patch": {"src/caffe/common.cpp"},
        "cudnn-deterministic-max-pooling.patch": {"include/caffe/util/cudnn.hpp"},
        "cudnn-convolution-layer.patch": {
            "include/caffe/layers/cudnn_conv_layer.hpp", "src/caffe/layers/cudnn_conv_layer.cpp",
            "src/caffe/layers/cudnn_conv_layer.cu"}}
    common = (tree / "src/caffe/common.cpp").read_text()
    # every cuBLAS handle gets its math mode: the one of Caffe() and the one of SetDevice()
    assert common.count("cublasCreate(") == 2 and common.count("caffe_set_cublas_math(") == 3
    assert "CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH" in common and "#if CUDART_VERSION >= 11000" in common
    conv = (tree / "src/caffe/layers/cudnn_conv_layer.cpp").read_text()
    for needed in ('env_flag("CAFFE_TF32")', 'env_flag("CAFFE_CUDNN_DETERMINISTIC")', "CUDNN_FMA_MATH",
                   "cudnnSetConvolutionGroupCount", "cudnnFindConvolutionForwardAlgorithm",
                   "cudnnFindConvolutionBackwardFilterAlgorithm", "cudnnFindConvolutionBackwardDataAlgorithm",
                   "p.determinism != CUDNN_DETERMINISTIC", "cudaMemGetInfo"):
        assert needed in conv, needed
    # deterministic mode: heuristic ranking (a timed one can differ between reruns), deterministic pooling
    assert "ChooseAll(i, deterministic_ ? kHeuristic : kFind, limit, &fallback)" in conv
    assert "CUDNN_POOLING_MAX_DETERMINISTIC : CUDNN_POOLING_MAX" in (tree / "include/caffe/util/cudnn.hpp").read_text()
    cu = (tree / "src/caffe/layers/cudnn_conv_layer.cu").read_text()
    assert "for (int g = 0" not in cu   # one call for all groups
